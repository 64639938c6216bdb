"""The Frechet distance between two Gaussians fitted to feature sets (FID, FVD, E-FID), as pytorch-fid.

:func:`frechet_distance` is pytorch-fid's ``calculate_frechet_distance`` (mseitzer/pytorch-fid
``src/pytorch_fid/fid_score.py``) line for line::

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))

with ``scipy.linalg.sqrtm`` of the product; when that is not finite (a singular product), ``eps``
(1e-6) is added to both diagonals and the root taken again; an imaginary part of the result's
diagonal larger than 1e-3 is an error, a smaller one (numerical noise) is dropped. (pytorch-fid calls
``sqrtm(..., disp=False)``; SciPy >= 1.16 deprecates ``disp`` and returns the root alone, which is
what is used here: the same root.)

The Gaussians (:func:`gaussian_stats`): ``mu`` the feature mean, ``S`` the SAMPLE covariance
(``np.cov(rowvar=False)``: divided by ``n - 1``), as pytorch-fid. The streaming form
(:class:`FrechetMetric`) keeps per side ``sum`` ``(D,)``, ``outer`` ``(D, D)`` (sum of ``f f^T``) and
``count`` in float64, so ranks add (``S = (outer - n mu mu^T) / (n - 1)``); fewer than 2 samples on
a side give NaN (no covariance). Few samples against the dimension (e.g. 100 clips in I3D's 400-d
space) give a rank-deficient covariance: the number is then biased and must be reported with its
sample count (the CLI and the protocol do).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from model.metrics.streaming import SumMetric

__all__ = ["EPS", "FrechetMetric", "frechet_distance", "frechet_from_features", "gaussian_stats"]

EPS = 1e-6
IMAG_ATOL = 1e-3


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm(a)`` (the root only; its singular-matrix warning silenced: non-finite
    results are handled by the caller, as pytorch-fid's ``disp=False``)."""
    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = linalg.sqrtm(a)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = EPS) -> float:
    """pytorch-fid's ``calculate_frechet_distance`` (module docstring), float64."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"mean shapes {mu1.shape} {mu2.shape} / covariance shapes {sigma1.shape} {sigma2.shape} differ")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():  # product might be almost singular
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAG_ATOL):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gaussian_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(mu (D,), sigma (D, D))`` of ``(N, D)`` features: mean and sample covariance (``np.cov(rowvar=False)``)."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_from_features(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, eps: float = EPS) -> float:
    """The Frechet distance of two ``(N, D)`` feature sets (:func:`gaussian_stats` of each)."""
    return frechet_distance(*gaussian_stats(pred), *gaussian_stats(target), eps=eps)


class FrechetMetric(SumMetric):
    """Streaming Frechet distance of ``dim``-d features: per side (``pred``, ``target``) the sums
    ``{side}_sum (D,)``, ``{side}_outer (D, D)``, ``{side}_count ()``. :meth:`update_features` adds raw
    features; subclasses' ``update`` computes them with their judge."""

    def __init__(self, dim: int, eps: float = EPS):
        self.dim = int(dim)
        self.eps = eps
        super().__init__()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        d = self.dim
        return {f"{s}_{k}": shape for s in ("pred", "target") for k, shape in (("sum", (d,)), ("outer", (d, d)), ("count", ()))}

    def update_features(self, pred: torch.Tensor | np.ndarray | None = None, target: torch.Tensor | np.ndarray | None = None) -> None:
        """Add ``(N, D)`` features to either side (or both)."""
        for side, f in (("pred", pred), ("target", target)):
            if f is None:
                continue
            x = torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f.detach()).to(torch.float64).cpu()
            if x.ndim != 2 or x.shape[1] != self.dim:
                raise ValueError(f"expected (N, {self.dim}) features, got {tuple(x.shape)}")
            self._add(f"{side}_sum", x.sum(0))
            self._add(f"{side}_outer", x.T @ x)
            self._add(f"{side}_count", float(x.shape[0]))

    def count(self, side: str) -> int:
        return int(self._state[f"{side}_count"])

    def stats(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` of one side (sample covariance, as :func:`gaussian_stats`)."""
        n = float(self._state[f"{side}_count"])
        if n < 2:
            raise ValueError(f"{side}: {int(n)} samples, a covariance needs at least 2")
        s = self._state[f"{side}_sum"].cpu().numpy()
        outer = self._state[f"{side}_outer"].cpu().numpy()
        mu = s / n
        sigma = (outer - n * np.outer(mu, mu)) / (n - 1)
        return mu, (sigma + sigma.T) / 2

    def compute(self) -> float:
        if min(self.count("pred"), self.count("target")) < 2:
            return float("nan")
        return frechet_distance(*self.stats("pred"), *self.stats("target"), eps=self.eps)
