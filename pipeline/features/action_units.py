"""``action_units``: action-unit probabilities of every frame of the clip (the AU-loss target, AU F1 reference).

The paper's AU loss (eq. 4) compares the action units of generated frames with the ground truth's;
this feature computes the ground truth's once per clip with the ``action_units`` judge
(:mod:`judges.action_units`: LibreFace's BP4D AU detector, a ResNet-18 over a 224 crop aligned by
its MediaPipe convention, :func:`judges.action_units.crop_box_from_landmarks`) on the clip's own
frames. The AU F1 metric (Table 1) uses the same AU set and threshold.

Files: ``frames.npy`` ``(frames, 12)`` float32 probabilities of AUs
:data:`judges.action_units.AUS` (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24), the ``action_units``
entry of training samples. Values: the AU list, each AU's mean probability and presence rate
(probability >= 0.5, LibreFace's threshold). Scores: ``active_mean`` (the mean number of present AUs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.clip import Clip
from core.shards import Member
from judges import _specs as specs
from pipeline.features import torch_device
from pipeline.features._frames import FrameExtractor, FrameParams

WEIGHTS = (specs.ACTION_UNITS,)  # torch-free: the stage's driver never imports torch; its workers load the judge
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (
    Member("frames.npy", "float32", ("frames", len(specs.AUS)), "AU probabilities per frame (AUS order)",
           sample="action_units", window="frames"),
)
THRESHOLD = 0.5


@dataclass(frozen=True)
class Params(FrameParams):
    pass


class Extractor(FrameExtractor):
    name = "action_units"
    version = "1"
    weights = WEIGHTS

    def setup(self) -> None:
        from judges import action_units

        self.judge = action_units.load(Path(self.folders[action_units.SPEC.name]), torch_device(self.params.device))

    def judge_frames(self, frames: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
        from judges import action_units

        out = self.judge.predict(frames, action_units.crop_box_from_landmarks(landmarks), batch_size=self.params.frame_batch)
        return {"probs": out.probs.float().cpu().numpy()}

    def summarise(self, clip: Clip, arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, float], dict[str, np.ndarray]]:
        probs = arrays["probs"].astype(np.float32)
        present = probs >= THRESHOLD
        values = {"aus": list(specs.AUS), "threshold": THRESHOLD,
                  "mean": [round(float(v), 6) for v in probs.mean(axis=0)],
                  "presence": [round(float(v), 6) for v in present.mean(axis=0)]}
        return values, {"active_mean": float(present.sum(axis=1).mean())}, {"frames.npy": probs}
