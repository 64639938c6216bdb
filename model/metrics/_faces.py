"""Landmark bookkeeping shared by the face metrics (E-FID, AU F1, CCC, Sync).

Landmarks: ``(N, K, 2|3)`` image pixels of the frames they go with (MediaPipe face mesh, K = 478 as
ingest writes ``landmarks.npy``; x right, y down), NaN where no face. The ground truth's track crops
both videos unless the generated video's own track is given (``pred_landmarks``): the paper's
protocol generates from the ground truth's first frame, so the face stays where the ground truth's is
to within the crop margins; pass the generated video's own track where it does not.
"""

from __future__ import annotations

import numpy as np

__all__ = ["paired_landmarks", "valid_frames"]


def valid_frames(landmarks: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: frames whose landmarks are all finite."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[-1] not in (2, 3):
        raise ValueError(f"expected (N, K, 2|3) landmarks, got {lm.shape}")
    return np.isfinite(lm[..., :2]).all(axis=(1, 2))


def paired_landmarks(n: int, landmarks: np.ndarray, pred_landmarks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(target_lm, pred_lm, keep)`` for ``n`` frame pairs: ``pred_lm`` defaults to the target's track;
    ``keep`` marks the frames where both are finite (the frames a face metric uses)."""
    t = np.asarray(landmarks, dtype=np.float64)
    p = t if pred_landmarks is None else np.asarray(pred_landmarks, dtype=np.float64)
    if len(t) != n or len(p) != n:
        raise ValueError(f"{n} frame pairs but landmark tracks of {len(t)} (target) and {len(p)} (pred) frames")
    return t, p, valid_frames(t) & valid_frames(p)
