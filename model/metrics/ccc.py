"""CCC of valence and arousal: Lin's concordance correlation coefficient between the valence (arousal)
of generated frames and of the ground-truth frames, both from the FRAMES by the visual judge
(:mod:`judges.face_va`, EmoNet 8-class, its evaluation crop from the MediaPipe landmarks).

``CCC = 2 rho s_p s_g / (s_p^2 + s_g^2 + (m_p - m_g)^2) = 2 cov_pg / (var_p + var_g + (m_p - m_g)^2)``
with POPULATION moments (divided by n). Never from audio: the generated video shares the ground
truth's audio, so audio valence/arousal would give CCC = 1 for every method (DESIGN 9).

Samples: every frame pair with landmarks on both sides, all videos pooled (CCC of the concatenated
series, as in AVEC-style evaluation), not a mean of per-video CCCs. VA are EmoNet's clamped outputs
in [-1, 1]. Streaming states: ``n`` and per dimension (valence, arousal) the sums of ``p``, ``g``,
``p^2``, ``g^2``, ``p g`` in float64 (ranks add).
"""

from __future__ import annotations

import numpy as np
import torch

from model.metrics._faces import paired_landmarks
from model.metrics.streaming import SumMetric, as_uint8_frames

__all__ = ["CCC", "ccc", "ccc_from_sums", "ccc_va", "protocol", "valence_arousal"]


def ccc(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Scalar float64 CCC of two 1-D series (population moments; NaN when both are constant and equal)."""
    p = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred).double().flatten()
    g = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target).double().flatten()
    if p.shape != g.shape or p.numel() == 0:
        raise ValueError(f"expected two non-empty series of one length, got {tuple(p.shape)} and {tuple(g.shape)}")
    mp, mg = p.mean(), g.mean()
    vp, vg = ((p - mp) ** 2).mean(), ((g - mg) ** 2).mean()
    cov = ((p - mp) * (g - mg)).mean()
    return 2 * cov / (vp + vg + (mp - mg) ** 2)


def ccc_from_sums(n, sp, sg, spp, sgg, spg) -> torch.Tensor:
    """CCC from the running sums (elementwise over any trailing dimension)."""
    mp, mg = sp / n, sg / n
    vp, vg = spp / n - mp * mp, sgg / n - mg * mg
    cov = spg / n - mp * mg
    return 2 * cov / (vp + vg + (mp - mg) ** 2)


@torch.no_grad()
def valence_arousal(frames, landmarks: np.ndarray, judge, batch_size: int = 32) -> torch.Tensor:
    """``(N, 2)`` float64 (valence, arousal) of each frame on EmoNet's crop (:func:`judges.face_va.crop_box_from_landmarks`)."""
    from judges import face_va

    imgs = as_uint8_frames(frames)
    if len(imgs) == 0:
        return torch.zeros(0, 2, dtype=torch.float64)
    boxes = face_va.crop_box_from_landmarks(np.asarray(landmarks, dtype=np.float64))
    return judge.predict(imgs, boxes, batch_size=batch_size).valence_arousal.double().cpu()


def ccc_va(pred, target, landmarks: np.ndarray, judge, pred_landmarks: np.ndarray | None = None) -> dict[str, float]:
    """``{"ccc_v", "ccc_a"}`` of one frame-paired video; ``landmarks`` the ground truth's track."""
    m = CCC(judge)
    m.update(pred, target, landmarks, pred_landmarks)
    return m.compute()


class CCC(SumMetric):
    """Streaming CCC of valence and arousal (states: ``n``; ``sp, sg, spp, sgg, spg`` of shape (2,))."""

    def __init__(self, judge=None, batch_size: int = 32):
        self.judge = judge
        self.batch_size = batch_size
        super().__init__()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"n": (), **{k: (2,) for k in ("sp", "sg", "spp", "sgg", "spg")}}

    def update_values(self, pred_va: torch.Tensor | np.ndarray, target_va: torch.Tensor | np.ndarray) -> None:
        """Add ``(N, 2)`` (valence, arousal) series of generated and ground-truth frames."""
        p = torch.as_tensor(np.asarray(pred_va) if not isinstance(pred_va, torch.Tensor) else pred_va).double().cpu().reshape(-1, 2)
        g = torch.as_tensor(np.asarray(target_va) if not isinstance(target_va, torch.Tensor) else target_va).double().cpu().reshape(-1, 2)
        if p.shape != g.shape:
            raise ValueError(f"pred {tuple(p.shape)} and target {tuple(g.shape)} VA series differ in length")
        self._add("n", float(p.shape[0]))
        for k, v in (("sp", p.sum(0)), ("sg", g.sum(0)), ("spp", (p * p).sum(0)), ("sgg", (g * g).sum(0)), ("spg", (p * g).sum(0))):
            self._add(k, v)

    def update(self, pred, target, landmarks: np.ndarray, pred_landmarks: np.ndarray | None = None) -> None:
        p, t = as_uint8_frames(pred), as_uint8_frames(target)
        if p.shape != t.shape:
            raise ValueError(f"pred {p.shape} and target {t.shape} must have one shape")
        t_lm, p_lm, keep = paired_landmarks(len(t), landmarks, pred_landmarks)
        self.update_values(valence_arousal(p[keep], p_lm[keep], self.judge, self.batch_size),
                           valence_arousal(t[keep], t_lm[keep], self.judge, self.batch_size))

    def compute(self) -> dict[str, float]:
        s = self._state
        if float(s["n"]) == 0:
            return {"ccc_v": float("nan"), "ccc_a": float("nan"), "frames": 0}
        v = ccc_from_sums(s["n"], s["sp"], s["sg"], s["spp"], s["sgg"], s["spg"])
        return {"ccc_v": float(v[0]), "ccc_a": float(v[1]), "frames": int(s["n"])}


def protocol() -> dict:
    from judges import face_va as judge

    return {"metric": "CCC V/A", "formula": "2 rho s_p s_g / (s_p^2 + s_g^2 + (m_p - m_g)^2)", "moments": "population (divide by n)",
            "source": "valence/arousal from the FRAMES (visual judge) of generated vs ground-truth video; never audio",
            "network": "EmoNet 8-class (judges.face_va), clamped VA in [-1, 1]",
            "weights": {"folder": judge.SPEC.name, "file": judge.CHECKPOINT},
            "crop": "EmoNet evaluation crop: bounding box of the 68-point-equivalent jaw/brow landmarks, side (w + h) / 1.1, 256x256",
            "samples": "every frame pair with landmarks, all videos concatenated (not a mean of per-video CCCs)"}
