"""AU F1: per-AU F1 of AU presence in generated frames against presence in the ground-truth frames
(both judged by :mod:`judges.action_units`), then the macro mean over AUs.

* detector: LibreFace ResNet-18 (BP4D), the 12 AUs 1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24, on its
  224 crop (LibreFace's alignment square from the MediaPipe landmarks: :meth:`judges.action_units.AUJudge.predict`).
  It is THE SAME network as the AU loss's judge (eq. 4): not an independent detector (DESIGN 9 asks to
  say so);
* presence: probability >= 0.5 (:data:`THRESHOLD`, LibreFace's), for generated and ground truth alike;
  the ground truth's presence is the label, the generated frame's the prediction;
* counts: TP/FP/FN per AU summed over every frame pair of every video (frames without landmarks on
  either side are left out); ``F1 = 2 TP / (2 TP + FP + FN)``;
* an AU present in no frame of either side (``2 TP + FP + FN = 0``) has no F1 (NaN) and is left out
  of the macro mean (scikit-learn's ``f1_score(..., zero_division=np.nan)`` then ``nanmean``); the
  number of AUs averaged is reported. No AU present anywhere: NaN.
"""

from __future__ import annotations

import numpy as np
import torch

from model.metrics._faces import paired_landmarks
from model.metrics.streaming import SumMetric, as_uint8_frames

__all__ = ["AUF1", "THRESHOLD", "au_f1", "f1_from_presence", "presence", "protocol"]

THRESHOLD = 0.5


def _aus() -> tuple[int, ...]:
    from judges import action_units

    return action_units.AUS


def counts(pred_present: np.ndarray | torch.Tensor, target_present: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """``tp``, ``fp``, ``fn`` ``(A,)`` of ``(N, A)`` boolean presence (target = label)."""
    p = np.asarray(pred_present, dtype=bool)
    t = np.asarray(target_present, dtype=bool)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"expected two (N, A) presence arrays of one shape, got {p.shape} and {t.shape}")
    return {"tp": (p & t).sum(0).astype(np.float64), "fp": (p & ~t).sum(0).astype(np.float64),
            "fn": (~p & t).sum(0).astype(np.float64)}


def _scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[float, np.ndarray]:
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), np.nan)
    macro = float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")
    return macro, per


def f1_from_presence(pred_present, target_present) -> tuple[float, np.ndarray]:
    """``(macro F1, per-AU F1 (A,))`` of boolean presence arrays (NaN for AUs absent on both sides)."""
    c = counts(pred_present, target_present)
    return _scores(c["tp"], c["fp"], c["fn"])


@torch.no_grad()
def presence(frames, landmarks: np.ndarray, judge, threshold: float = THRESHOLD, batch_size: int = 32) -> np.ndarray:
    """``(N, 12)`` bool: the judge's AU probability >= ``threshold`` on each frame's LibreFace crop."""
    from judges import action_units

    imgs = as_uint8_frames(frames)
    if len(imgs) == 0:
        return np.zeros((0, len(_aus())), dtype=bool)
    boxes = action_units.crop_box_from_landmarks(np.asarray(landmarks, dtype=np.float64))
    return (judge.predict(imgs, boxes, batch_size=batch_size).probs >= threshold).cpu().numpy()


def au_f1(pred, target, landmarks: np.ndarray, judge, pred_landmarks: np.ndarray | None = None,
          threshold: float = THRESHOLD) -> dict:
    """``{"au_f1": macro, "AU1": ..., ...}`` for one frame-paired video; ``landmarks`` the ground truth's track."""
    m = AUF1(judge, threshold)
    m.update(pred, target, landmarks, pred_landmarks)
    return m.compute()


class AUF1(SumMetric):
    """Streaming AU F1: states ``tp``, ``fp``, ``fn`` ``(12,)`` and ``frames`` (counts; ranks add)."""

    def __init__(self, judge, threshold: float = THRESHOLD, batch_size: int = 32):
        self.judge = judge
        self.threshold = threshold
        self.batch_size = batch_size
        super().__init__()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        a = len(_aus())
        return {"tp": (a,), "fp": (a,), "fn": (a,), "frames": ()}

    def update_presence(self, pred_present, target_present) -> None:
        c = counts(pred_present, target_present)
        for k, v in c.items():
            self._add(k, torch.from_numpy(v))
        self._add("frames", float(np.shape(pred_present)[0]))

    def update(self, pred, target, landmarks: np.ndarray, pred_landmarks: np.ndarray | None = None) -> None:
        p, t = as_uint8_frames(pred), as_uint8_frames(target)
        if p.shape != t.shape:
            raise ValueError(f"pred {p.shape} and target {t.shape} must have one shape")
        t_lm, p_lm, keep = paired_landmarks(len(t), landmarks, pred_landmarks)
        self.update_presence(presence(p[keep], p_lm[keep], self.judge, self.threshold, self.batch_size),
                             presence(t[keep], t_lm[keep], self.judge, self.threshold, self.batch_size))

    def compute(self) -> dict:
        macro, per = _scores(*(self._state[k].cpu().numpy() for k in ("tp", "fp", "fn")))
        out = {"au_f1": macro, "aus_averaged": int(np.isfinite(per).sum()), "frames": int(self._state["frames"])}
        out.update({f"AU{au}": float(v) for au, v in zip(_aus(), per)})
        return out


def protocol(threshold: float = THRESHOLD) -> dict:
    from judges import action_units as judge

    return {"metric": "AU F1", "detector": "LibreFace ResNet-18 BP4D (judges.action_units)",
            "weights": {"folder": judge.SPEC.name, "file": judge.CHECKPOINT},
            "independence": "the same network as the AU loss's judge (eq. 4): not an independent detector",
            "aus": list(judge.AUS), "threshold": threshold, "presence": f"probability >= {threshold}",
            "label": "presence on the ground-truth frame; prediction: presence on the generated frame",
            "crop": "LibreFace alignment square from MediaPipe landmarks (no rotation), 512 -> 256 -> centre 224",
            "aggregation": "TP/FP/FN per AU summed over all frame pairs of all videos; F1 = 2TP/(2TP+FP+FN); "
                           "macro mean over AUs, AUs absent on both sides (2TP+FP+FN = 0) left out"}
