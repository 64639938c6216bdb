"""FID: the Frechet distance (:mod:`model.metrics.frechet`, pytorch-fid's arithmetic) of pytorch-fid's
Inception pool3 features (:mod:`judges.inception`: 2048-d, the FID Inception weights, bilinear resize
to 299 inside, no antialias) of generated vs ground-truth FRAMES.

Every frame is one sample (frames of all videos pooled; no subsampling), RGB [0, 1] as given (the
CLI: ``--size`` square frames, 512 default). clean-fid resizes differently and gives other numbers
(DESIGN 9). The frame count changes the value (a biased estimator): report it (the CLI does).
"""

from __future__ import annotations

import torch

from model.metrics.frechet import FrechetMetric, frechet_from_features
from model.metrics.streaming import as_float_frames

__all__ = ["FID", "fid", "inception_features", "protocol"]


@torch.no_grad()
def inception_features(frames: torch.Tensor, judge, batch_size: int = 50) -> torch.Tensor:
    """``(N, D)`` float64 pool3 features of ``(N, 3, H, W)`` [0, 1] frames (or uint8 ``(N, H, W, 3)``)."""
    x = as_float_frames(frames)
    out = [judge.forward(x[i:i + batch_size]).pool3.double().cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, judge.dim, dtype=torch.float64)


def fid(pred: torch.Tensor, target: torch.Tensor, judge, batch_size: int = 50) -> float:
    """FID of two frame sets (their counts may differ), ``judge`` a :class:`judges.inception.InceptionJudge`."""
    return frechet_from_features(inception_features(pred, judge, batch_size), inception_features(target, judge, batch_size))


class FID(FrechetMetric):
    """Streaming FID: feature sums per side (:class:`model.metrics.frechet.FrechetMetric`)."""

    def __init__(self, judge, batch_size: int = 50):
        self.judge = judge
        self.batch_size = batch_size
        super().__init__(judge.dim)

    def update(self, pred: torch.Tensor | None, target: torch.Tensor | None) -> None:
        """Frames of either side (either may be None, e.g. to build reference statistics)."""
        self.update_features(None if pred is None else inception_features(pred, self.judge, self.batch_size),
                             None if target is None else inception_features(target, self.judge, self.batch_size))


def protocol() -> dict:
    from judges import inception as judge

    return {"metric": "FID", "network": "pytorch-fid FID Inception-v3 pool3 (2048-d), judges.inception",
            "weights": {"folder": judge.SPEC.name, "file": judge.FILE, "sha256_prefix": judge.SHA256_PREFIX},
            "resize": "bilinear to 299x299 inside the network (align_corners=False, no antialias), as pytorch-fid",
            "input": "RGB [0, 1] frames", "samples": "every frame of every video, pooled",
            "covariance": "sample (n - 1), as np.cov", "sqrtm": "scipy.linalg.sqrtm; eps 1e-6 on the diagonals if not finite",
            "precision": "features float32, statistics float64"}
