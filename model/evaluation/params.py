"""The ``evaluate`` section of params.yaml, and the ``inference`` section as the evaluation uses it.

``evaluate.tiny`` maps dotted ``evaluate.`` / ``inference.`` keys to the values used when
``weights.profile`` is tiny (the demo: a few DDIM steps and the first seconds of each clip, so the
sample's test split evaluates in about two minutes on 2 cores); every override applied is recorded in
``protocol.json``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import params as params_mod
from model.inference.params import InferenceParams


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate`` section of params.yaml (paper Table 1 protocol: DESIGN 9)."""

    split: str = "test"
    metrics: str = "all"  # comma-separated names of model.metrics.cli.METRICS, or all
    max_clips: int = 0  # 0: every clip of the split
    max_frames: int = 0  # 0: whole clips (the paper); else the first N frames of each clip
    fvd_stride: int = 16  # frames between FVD clip starts (16: non-overlapping)
    show: int = 3  # clips shown side by side (generated | ground truth) in index.html
    out_dir: str = "reports/eval"
    reference_dir: str = "reports/eval_reference"  # the cached ground-truth FID/FVD statistics (their own stage)
    train_dir: str = "reports/train"  # the training stages' dvclive folders (train.common.log_dir): curves in index.html
    device: str = "auto"  # auto: cuda when available (each rank its own GPU under accelerate), else cpu
    tiny: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_clips < 0 or self.max_frames < 0 or self.fvd_stride < 1 or self.show < 0:
            raise ValueError("max_clips, max_frames and show must be >= 0, fvd_stride >= 1")
        if 0 < self.max_frames < 16:
            raise ValueError("evaluate.max_frames must be 0 or >= 16 (one FVD clip)")


@dataclass(frozen=True)
class Resolved:
    evaluate: EvaluateParams
    inference: InferenceParams
    profile: str
    weights_dir: Path
    tiny_overrides: dict[str, Any]
    raw: dict[str, Any]


def resolve(path: Path | str | None = None) -> Resolved:
    """The ``evaluate`` and ``inference`` sections (``evaluate.tiny`` applied for the tiny profile)."""
    from core.weights import WeightsParams

    path = Path(path) if path is not None else params_mod.params_path()
    raw = copy.deepcopy(params_mod.read_yaml(path))
    weights = params_mod.load(WeightsParams, "weights", path, data=raw)
    overrides = dict((raw.get("evaluate") or {}).get("tiny") or {}) if weights.profile == "tiny" else {}
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if parts[0] not in ("evaluate", "inference") or len(parts) < 2 or parts[1] == "tiny":
            raise params_mod.ParamsError(f"{path}: evaluate.tiny: key '{dotted}' must start with evaluate. or inference.")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return Resolved(evaluate=params_mod.load(EvaluateParams, "evaluate", path, data=raw),
                    inference=params_mod.load(InferenceParams, "inference", path, data=raw), profile=weights.profile,
                    weights_dir=Path(weights.dir) / weights.profile, tiny_overrides=overrides, raw=raw)
