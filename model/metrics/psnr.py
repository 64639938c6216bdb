"""PSNR: per frame, then the mean over frames (DESIGN 9).

``PSNR_i = 10 log10(1 / max(MSE_i, MSE_FLOOR))`` with ``MSE_i`` the mean of ``(pred - target)^2``
over the frame's 3 x H x W values, both in [0, 1] (data range 1). The floor caps identical frames at
:data:`CAP_DB` = 100 dB (``MSE_FLOOR`` = 1e-10) instead of infinity, so a mean over frames stays
finite; a one-level 8-bit difference everywhere is 48.13 dB, far below the cap. RGB, no colour
conversion, no border crop. Aggregate: mean over all frames seen (frame-weighted across videos).
"""

from __future__ import annotations

import math

import torch

from model.metrics.streaming import MeanOfFrames, check_pair

__all__ = ["CAP_DB", "PSNR", "protocol", "psnr", "psnr_frames"]

MSE_FLOOR = 1e-10
CAP_DB = 10.0 * math.log10(1.0 / MSE_FLOOR)  # 100 dB


def psnr_frames(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float64 PSNR of each frame pair (frames as :func:`model.metrics.streaming.as_float_frames`)."""
    p, t = check_pair(pred, target)
    mse = ((p.double() - t.double()) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scalar: the mean of :func:`psnr_frames`."""
    return psnr_frames(pred, target).mean()


class PSNR(MeanOfFrames):
    """Streaming PSNR: states ``total`` (sum of per-frame dB) and ``count`` (frames)."""

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self._add_frames(psnr_frames(pred, target))


def protocol() -> dict:
    return {"metric": "PSNR", "per": "frame, then mean over all frames (frame-weighted across videos)",
            "data_range": 1.0, "input": "RGB float in [0, 1]", "colour_space": "RGB (all 3 channels in the MSE)",
            "formula": "10 log10(1 / max(MSE, 1e-10))", "cap_db": CAP_DB,
            "identical_frames": f"capped at {CAP_DB:g} dB (MSE floor 1e-10)", "border_crop": 0}
