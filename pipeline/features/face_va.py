"""``face_va``: visual valence/arousal and expression of every frame of the clip (EmoNet; the emo-loss target).

DESIGN 6: the generated video's audio IS the driving audio, so an audio-VA emo loss is identically
zero; the trainable emo loss (eq. 3) compares the valence/arousal of the generated FRAMES with the
ground truth frames', computed here once per clip with the ``face_va`` judge (:mod:`judges.face_va`:
EmoNet 8-class, CC BY-NC-ND 4.0, research use) on the clip's own frames, cropped by the judge's box
convention from our MediaPipe landmarks (:func:`judges.face_va.crop_box_from_landmarks`). The CCC
metrics (Table 1) use the same judge on generated and ground-truth frames.

Files: ``frames.npy`` ``(frames, 2)`` float32 valence, arousal in [-1, 1] (the ``face_va`` entry of
training samples); ``expression.npy`` ``(frames, 8)`` float32 expression probabilities in
:data:`judges.face_va.CLASSES` order (``face_expression``). Values: clip means and the classes.
Scores: ``valence_mean``, ``arousal_mean``.
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

WEIGHTS = (specs.FACE_VA,)  # torch-free: the stage's driver never imports torch; its workers load the judge
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (
    Member("frames.npy", "float32", ("frames", 2), "EmoNet valence, arousal per frame", sample="face_va", window="frames"),
    Member("expression.npy", "float32", ("frames", len(specs.CLASSES)), "EmoNet expression probabilities per frame",
           sample="face_expression", window="frames"),
)


@dataclass(frozen=True)
class Params(FrameParams):
    pass


class Extractor(FrameExtractor):
    name = "face_va"
    version = "1"
    weights = WEIGHTS

    def setup(self) -> None:
        from judges import face_va

        self.judge = face_va.load(Path(self.folders[face_va.SPEC.name]), torch_device(self.params.device))

    def judge_frames(self, frames: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
        from judges import face_va

        out = self.judge.predict(frames, face_va.crop_box_from_landmarks(landmarks), batch_size=self.params.frame_batch)
        return {"va": out.valence_arousal.float().cpu().numpy(), "expression": out.probs.float().cpu().numpy()}

    def summarise(self, clip: Clip, arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, float], dict[str, np.ndarray]]:
        va, expression = arrays["va"].astype(np.float32), arrays["expression"].astype(np.float32)
        means = expression.mean(axis=0)
        values = {"classes": list(specs.CLASSES), "valence_mean": float(va[:, 0].mean()), "arousal_mean": float(va[:, 1].mean()),
                  "expression_mean": [round(float(v), 6) for v in means], "dominant": specs.CLASSES[int(means.argmax())]}
        scores = {"valence_mean": float(va[:, 0].mean()), "arousal_mean": float(va[:, 1].mean())}
        return values, scores, {"frames.npy": va, "expression.npy": expression}
