"""LPIPS: ``LPIPS(net='alex', version='0.1')`` (:mod:`judges.lpips`) per frame pair, then the mean over frames.

Frames in [0, 1] go to the judge as ``2 x - 1`` (lpips' ``normalize=True``; the judge's inputs are
[-1, 1]), at the resolution given (the value depends on it: the CLI compares at ``--size``, 512 by
default, DESIGN 9), no crop, RGB. Aggregate: mean over all frames seen (frame-weighted). The judge is
injected (``judges.lpips.load(folder, device)``), never loaded here.
"""

from __future__ import annotations

import torch

from model.metrics.streaming import MeanOfFrames, check_pair

__all__ = ["LPIPS", "lpips", "lpips_frames", "protocol"]


@torch.no_grad()
def lpips_frames(pred: torch.Tensor, target: torch.Tensor, judge, batch_size: int = 16) -> torch.Tensor:
    """``(N,)`` float64 LPIPS of each frame pair, ``judge`` a :class:`judges.lpips.LPIPSJudge`."""
    p, t = check_pair(pred, target)
    out = [judge.forward(p[i:i + batch_size] * 2 - 1, t[i:i + batch_size] * 2 - 1).distance.double().cpu()
           for i in range(0, p.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def lpips(pred: torch.Tensor, target: torch.Tensor, judge, batch_size: int = 16) -> torch.Tensor:
    """Scalar: the mean of :func:`lpips_frames`."""
    return lpips_frames(pred, target, judge, batch_size).mean()


class LPIPS(MeanOfFrames):
    """Streaming LPIPS over a judge: states ``total`` and ``count`` (frames)."""

    def __init__(self, judge, batch_size: int = 16):
        self.judge = judge
        self.batch_size = batch_size
        super().__init__()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self._add_frames(lpips_frames(pred, target, self.judge, self.batch_size))


def protocol() -> dict:
    from judges import lpips as judge

    return {"metric": "LPIPS", "network": "LPIPS(net='alex', version='0.1') (richzhang/PerceptualSimilarity), judges.lpips",
            "weights": {"folder": judge.SPEC.name, "files": list(judge.SPEC.files), "sha256_lin": judge.SPEC.sha256},
            "input": "RGB [0, 1] frames mapped to [-1, 1] (2x - 1)", "resolution": "as compared (CLI: --size, 512 default)",
            "spatial": False, "per": "frame pair, then mean over all frames (frame-weighted across videos)"}
