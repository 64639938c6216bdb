"""SSIM (Wang et al. 2004) per frame, then the mean over frames; in torch, equal to scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
channel_axis=-1)`` (DESIGN 9; skimage's DEFAULT, a uniform 7 x 7 window, gives other numbers).

* window: Gaussian, sigma 1.5, truncated at 3.5 sigma: 11 x 11 taps (radius 5), normalised to sum 1
  (``scipy.ndimage.gaussian_filter``'s kernel, which skimage uses), applied separably;
* local statistics: ``mu = w * x``, ``sigma_x^2 = w * x^2 - mu_x^2``, ``sigma_xy = w * xy - mu_x mu_y``:
  population (weighted) moments, no ``N / (N - 1)`` factor;
* ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = 1`` (data range of [0, 1] frames);
* the SSIM map is averaged over the VALID region only (pixels at least 5 from the border: skimage
  filters with reflection, then crops ``(win - 1) / 2`` before the mean, so the padding never counts);
* colour: each RGB channel separately, then the mean of the three (skimage's ``channel_axis``);
  no conversion to Y;
* aggregate: mean over all frames seen (frame-weighted across videos).

Frames must be at least 11 x 11. Computed in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.metrics.streaming import MeanOfFrames, check_pair

__all__ = ["SSIM", "gaussian_window", "protocol", "ssim", "ssim_frames"]

SIGMA = 1.5
TRUNCATE = 3.5
RADIUS = int(TRUNCATE * SIGMA + 0.5)  # 5 -> 11 taps
K1, K2 = 0.01, 0.03
DATA_RANGE = 1.0


def gaussian_window(sigma: float = SIGMA, radius: int = RADIUS, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(2 radius + 1,)`` normalised 1-D Gaussian (scipy.ndimage's ``_gaussian_kernel1d``)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / sigma**2 * x**2)
    return (phi / phi.sum()).to(dtype)


def _filter_valid(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian of ``(B, 1, H, W)``, valid region only: ``(B, 1, H - 10, W - 10)``."""
    k = w.numel()
    x = F.conv2d(x, w.view(1, 1, k, 1))
    return F.conv2d(x, w.view(1, 1, 1, k))


def ssim_frames(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float64 SSIM of each frame pair (mean of the three channels' mean valid-region SSIM)."""
    p, t = check_pair(pred, target)
    n, c, h, wd = p.shape
    if min(h, wd) < 2 * RADIUS + 1:
        raise ValueError(f"SSIM needs frames of at least {2 * RADIUS + 1} x {2 * RADIUS + 1}, got {h} x {wd}")
    x = p.double().reshape(n * c, 1, h, wd)
    y = t.double().reshape(n * c, 1, h, wd)
    w = gaussian_window(dtype=torch.float64).to(x.device)
    stats = _filter_valid(torch.cat([x, y, x * x, y * y, x * y]), w).split(n * c)
    ux, uy, uxx, uyy, uxy = stats
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).view(n, c).mean(1)


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scalar: the mean of :func:`ssim_frames`."""
    return ssim_frames(pred, target).mean()


class SSIM(MeanOfFrames):
    """Streaming SSIM: states ``total`` (sum of per-frame SSIM) and ``count`` (frames)."""

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self._add_frames(ssim_frames(pred, target))


def protocol() -> dict:
    return {"metric": "SSIM", "reference": "Wang et al. 2004; skimage structural_similarity(gaussian_weights=True, sigma=1.5, "
                                          "use_sample_covariance=False, data_range=1, channel_axis=-1)",
            "window": f"Gaussian sigma {SIGMA}, {2 * RADIUS + 1}x{2 * RADIUS + 1} (truncate {TRUNCATE})",
            "covariance": "population (weighted, no N/(N-1))", "K1": K1, "K2": K2, "data_range": DATA_RANGE,
            "border": f"mean over the valid region (pixels >= {RADIUS} from the border)",
            "colour_space": "RGB: per-channel SSIM, mean of the 3 channels (not Y)",
            "per": "frame, then mean over all frames (frame-weighted across videos)", "precision": "float64",
            "c1": (K1 * DATA_RANGE) ** 2, "c2": (K2 * DATA_RANGE) ** 2, "sigma": SIGMA, "window_size": 2 * RADIUS + 1,
            "note": f"kernel radius int({TRUNCATE} * {SIGMA} + 0.5) = {RADIUS}"}
