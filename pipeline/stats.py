"""Per-stage metrics, details and run records (DESIGN 3.6).

``reports/metrics/<stage>[-<name>].json`` holds the same few numbers for every stage
(:data:`METRIC_KEYS`: sources, kept, dropped, hours, tiny as 0/1): they are the DVC metrics, so
``dvc metrics show`` stays one narrow table and ``dvc metrics diff`` compares runs. Per-step counts
and drop reasons go to the details file ``reports/<stage>/<name>.json`` (read by the report and by
people). Both are DVC outputs and depend only on the data and the params: timings, throughput
(clips per second), cache hits and worker start-up describe one execution, not its result, and go
to the run record ``reports/runs/<stage>.json`` (:mod:`core.runs`), so ``dvc.lock`` is the same
whoever runs the pipeline, with a warm cache or a cold one.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from core.cli import StageFailed
from core.storage import write_text_atomic
from core.shards import Reject

if TYPE_CHECKING:  # the type only: select and report import this module without the runner
    from pipeline.runner import StepOutcome


@dataclass
class StageStats:
    stage: str
    name: str
    inputs: int = 0
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)
    run_steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, outcome: "StepOutcome") -> None:
        self.steps[outcome.step] = {"in": len(outcome.inputs), "out": len(outcome.kept), "dropped": len(outcome.drops)}
        self.run_steps[outcome.step] = {
            "cached": outcome.hits, "computed": outcome.misses, "seconds": round(outcome.seconds, 3),
            "worker_crashes": outcome.crashes, "retries": outcome.retries,
            "startup_s": round(outcome.startup_s, 3),  # worker spawn, imports, model set-up charged to this step
        }
        self.dropped.update(outcome.reasons)

    def to_json(self, kept: int) -> dict[str, Any]:
        """The details file: what the stage did to the data (the same on every machine)."""
        return {
            "stage": self.stage, "name": self.name, "inputs": self.inputs, "kept": kept,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "steps": self.steps,
        }

    def run_record(self, kept: int, seconds: float, runner: str | None = None) -> dict[str, Any]:
        """The run record: how this execution went (:mod:`core.runs`)."""
        steps = self.run_steps.values()
        return {
            "seconds": round(seconds, 3), "clips_per_s": round(kept / seconds, 3) if seconds > 0 else None,
            "computed": sum(s["computed"] for s in steps), "cached": sum(s["cached"] for s in steps),
            "startup_s": round(sum(s["startup_s"] for s in steps), 3),
            "worker_crashes": sum(s["worker_crashes"] for s in steps), "retries": sum(s["retries"] for s in steps),
            **({"runner": runner} if runner else {}), "steps": self.run_steps,
        }


def both(details: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """What ``ingest.run`` and ``extract.run`` return: the details and the run record in one mapping
    (each step's counts beside its cache hits and seconds), for callers and tests."""
    steps = {k: {**v, **run.get("steps", {}).get(k, {})} for k, v in details.get("steps", {}).items()}
    return {**details, **run, "steps": steps}


#: the keys of every stage's metrics file, in this order
METRIC_KEYS = ("sources", "kept", "dropped", "hours", "tiny")


def metrics(sources: int, kept: int, dropped: int, hours: float, tiny: bool) -> dict[str, Any]:
    """A stage's DVC metrics: counts, kept hours, tiny weights 0/1 (throughput is in the run record)."""
    values = {"sources": int(sources), "kept": int(kept), "dropped": int(dropped), "hours": round(float(hours), 4),
              "tiny": int(bool(tiny))}
    assert tuple(values) == METRIC_KEYS
    return values


def write_metrics(root: Path, stage: str, values: dict[str, Any]) -> Path:
    """``reports/metrics/<stage>.json`` (``stage``: ``ingest-<dataset>``, ``extract-<feature>-<dataset>``, ``select``)."""
    path = root / "reports" / "metrics" / f"{stage}.json"
    write_json(path, values)
    return path


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_error_share(stage: str, rejects: Sequence[Reject], total: int, max_fraction: float, rejects_file: Path) -> None:
    """Raise :class:`~core.cli.StageFailed` when the ``error:*`` rejects exceed ``max_fraction`` of the
    stage's ``total`` items (kept + rejected): the message names the most common error, an example
    and the rejects file. Reason-coded drops (``too_short``, ``no_face`` ...) never count. Any
    ``error:WorkerCrashed`` row (not cached, so a re-run retries it) fails the stage too."""
    errors = [r for r in rejects if r.reason.startswith("error:")]
    crashed = [r for r in errors if r.reason == "error:WorkerCrashed"]
    if crashed:  # not cached (they may be transient): the stage must not pass without them
        raise StageFailed(
            f"{stage}: {len(crashed)} item(s) were dropped because their worker process died {crashed[0].message[:200]}, "
            f"e.g. {crashed[0].key or crashed[0].source} at step {crashed[0].step} (listed in {rejects_file}); these are not "
            f"cached: re-run (give the workers more memory, or fewer with runner.num_cpus, if it happens again)")
    if not total or len(errors) / total <= max_fraction:
        return
    top, count = Counter(r.reason for r in errors).most_common(1)[0]
    example = next(r for r in errors if r.reason == top)
    raise StageFailed(
        f"{stage}: {len(errors)} of {total} items failed with an error ({len(errors) / total:.0%}, more than "
        f"runner.max_error_fraction = {max_fraction:g}); most common: {top} ({count}x), e.g. {example.key or example.source} "
        f"at step {example.step}: {example.message[:300]}. Every reject is listed in {rejects_file}; fix the cause "
        f"(or raise runner.max_error_fraction in params.yaml) and re-run")
