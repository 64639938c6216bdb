"""E-FID: the Frechet distance (:mod:`model.metrics.frechet`) of Deep3DFaceRecon expression coefficients
(:mod:`judges.face_3d`: coefficients ``80:144``, 64-d) of generated vs ground-truth frames.

Each frame is cropped to 224 x 224 by Deep3DFaceRecon's own alignment (``align_img``: five points,
the eye-corner means, nose tip and mouth corners of the MediaPipe landmarks, fitted to its 3D
template; PIL bicubic resize and crop: :meth:`judges.face_3d.Face3DJudge.predict`), then every frame
is one sample (frames of all videos pooled). Frames without landmarks on either side are left out of
both (:mod:`model.metrics._faces`).
"""

from __future__ import annotations

import numpy as np
import torch

from model.metrics._faces import paired_landmarks, valid_frames
from model.metrics.frechet import FrechetMetric, frechet_from_features
from model.metrics.streaming import as_uint8_frames

__all__ = ["EFID", "efid", "expression_features", "protocol"]

EXPRESSION = (80, 144)


@torch.no_grad()
def expression_features(frames, landmarks: np.ndarray, judge, batch_size: int = 32) -> torch.Tensor:
    """``(M, 64)`` float64 expression coefficients of the frames whose landmarks are finite."""
    imgs = as_uint8_frames(frames)
    lm = np.asarray(landmarks, dtype=np.float64)
    if len(lm) != len(imgs):
        raise ValueError(f"{len(imgs)} frames but {len(lm)} landmark frames")
    keep = np.flatnonzero(valid_frames(lm))
    out = [judge.predict([imgs[i] for i in keep[s:s + batch_size]], [lm[i] for i in keep[s:s + batch_size]]).expression.double().cpu()
           for s in range(0, len(keep), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, EXPRESSION[1] - EXPRESSION[0], dtype=torch.float64)


def efid(pred, target, landmarks: np.ndarray, judge, pred_landmarks: np.ndarray | None = None) -> float:
    """E-FID of one frame-paired video (or pooled frames); ``landmarks`` the ground truth's track."""
    t_lm, p_lm, keep = paired_landmarks(len(as_uint8_frames(target)), landmarks, pred_landmarks)
    p = as_uint8_frames(pred)[keep]
    t = as_uint8_frames(target)[keep]
    return frechet_from_features(expression_features(p, p_lm[keep], judge), expression_features(t, t_lm[keep], judge))


class EFID(FrechetMetric):
    """Streaming E-FID over a :class:`judges.face_3d.Face3DJudge` (64-d feature sums per side)."""

    def __init__(self, judge, batch_size: int = 32):
        self.judge = judge
        self.batch_size = batch_size
        super().__init__(EXPRESSION[1] - EXPRESSION[0])

    def update(self, pred, target, landmarks: np.ndarray, pred_landmarks: np.ndarray | None = None) -> None:
        p, t = as_uint8_frames(pred), as_uint8_frames(target)
        if p.shape != t.shape:
            raise ValueError(f"pred {p.shape} and target {t.shape} must have one shape")
        t_lm, p_lm, keep = paired_landmarks(len(t), landmarks, pred_landmarks)
        self.update_features(expression_features(p[keep], p_lm[keep], self.judge, self.batch_size),
                             expression_features(t[keep], t_lm[keep], self.judge, self.batch_size))


def protocol() -> dict:
    from judges import face_3d as judge

    return {"metric": "E-FID", "network": "Deep3DFaceRecon R-Net (ResNet-50, epoch_20.pth net_recon), judges.face_3d",
            "weights": {"folder": judge.SPEC.name, "file": judge.FILE},
            "features": "expression coefficients 80:144 (64-d)",
            "crop": "224x224 align_img (5 points from MediaPipe: eye-corner means, nose tip 1, mouth corners 61/291; "
                    "POS fit to the BFM template, rescale 102, PIL bicubic)",
            "samples": "every frame with landmarks, all videos pooled", "landmarks": "the ground truth's track for both "
            "videos unless the generated video's own is given",
            "covariance": "sample (n - 1)", "sqrtm": "scipy.linalg.sqrtm; eps 1e-6 on the diagonals if not finite"}
