"""Run records: how a stage's last execution went, kept apart from what it produced.

``reports/runs/<stage>.json`` holds what differs from one execution of a stage to the next although
its outputs do not: wall-clock seconds, throughput (clips or samples per second), per-step cache
hits and computed items, worker start-up seconds, crashes and retries, the runner mode, and for
training the git commit. None of it is a DVC output or a declared metric: an output's bytes are
hashed into ``dvc.lock``, so a timing inside one would change the lock on every run, and a second
clone's ``dvc repro`` (cold cache, other load) could never reproduce the committed lock. The
results themselves (counts, hours, losses, scores) stay in the DVC-tracked outputs and metrics.

A stage restored from DVC's run cache does not execute, so its record keeps describing the last
execution; each record names its stage and when it ran, so a stale one is recognisable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from core.storage import write_text_atomic

RUNS = Path("reports") / "runs"


def runs_dir(root: Path | str) -> Path:
    """A project's run records: ``<root>/reports/runs/``."""
    return Path(root) / RUNS


def beside(report_dir: Path | str) -> Path:
    """The run records beside a stage's report folder (``reports/train`` -> ``reports/runs``)."""
    return Path(report_dir).parent / RUNS.name


def write_run(folder: Path | str, stage: str, record: dict[str, Any]) -> Path:
    """Write ``<folder>/<stage>.json`` atomically (temp file + rename); ``finished_at`` (UTC) is added.
    ``stage``: ``ingest-<dataset>``, ``extract-<feature>-<dataset>``, ``select``, ``train-<stage>``, ``evaluate``."""
    path = Path(folder) / f"{stage}.json"
    data = {"stage": stage, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
    return path
