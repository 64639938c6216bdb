"""Per-stage counts, drop reasons and timings -> ``reports/<stage>/<name>.json`` (DESIGN 3.6).

These files are declared as DVC metrics, so ``dvc metrics show`` prints them and
``dvc metrics diff`` compares two runs.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.runner import StepOutcome


@dataclass
class StageStats:
    stage: str
    name: str
    inputs: int = 0
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, outcome: StepOutcome) -> None:
        self.steps[outcome.step] = {
            "in": len(outcome.inputs), "out": len(outcome.kept), "dropped": len(outcome.drops),
            "cached": outcome.hits, "computed": outcome.misses, "seconds": round(outcome.seconds, 3),
        }
        self.dropped.update(outcome.reasons)

    def to_json(self, kept: int, seconds: float) -> dict[str, Any]:
        return {
            "stage": self.stage, "name": self.name, "inputs": self.inputs, "kept": kept,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "seconds": round(seconds, 3),
            "clips_per_s": round(kept / seconds, 3) if seconds > 0 else None,
            "steps": self.steps, **self.extra,
        }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
