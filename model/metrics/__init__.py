"""Evaluation metrics of the paper's Table 1 (DESIGN section 9): PSNR, SSIM, LPIPS, FID, FVD, E-FID,
AU F1, Sync (SyncNet confidence), CCC of valence and arousal.

Each metric is a module with a pair, torchmetrics-style, and its written-down protocol:

- a functional form (``psnr.psnr(pred, target)``, ``fid.fid(pred, target, judge)`` ...), pure and batched;
- a streaming class (``PSNR()``, ``FID(judge)`` ...) with ``update(...)`` / ``compute()`` /
  ``reset()`` whose states are float64 SUMS (per-frame totals and counts, feature sums and outer
  products, TP/FP/FN counts, moment sums): ranks combine by adding them, ``merge([other.state()])``
  in one process or ``all_reduce()`` over ``torch.distributed`` (:mod:`model.metrics.streaming`),
  so a whole test set is never held;
- ``protocol()``: every choice as a dict (for ``reports/eval/protocol.json``).

| module | metric | judge |
|---|---|---|
| :mod:`~model.metrics.psnr` | PSNR per frame, capped at 100 dB | none |
| :mod:`~model.metrics.ssim` | SSIM, Gaussian 11x11 sigma 1.5, population covariance, RGB mean | none |
| :mod:`~model.metrics.lpips` | LPIPS alex v0.1 | ``judges.lpips`` |
| :mod:`~model.metrics.fid` | FID of pool3 features | ``judges.inception`` |
| :mod:`~model.metrics.fvd` | FVD of 16-frame clips | ``judges.i3d`` |
| :mod:`~model.metrics.efid` | E-FID of expression coefficients 80:144 | ``judges.face_3d`` |
| :mod:`~model.metrics.au_f1` | per-AU F1 of presence, macro mean | ``judges.action_units`` |
| :mod:`~model.metrics.sync` | LSE-C, LSE-D, offset | ``judges.sync`` |
| :mod:`~model.metrics.ccc` | CCC of valence and arousal from the frames | ``judges.face_va`` |

:mod:`~model.metrics.frechet` is the Frechet distance they share (pytorch-fid's ``scipy.linalg.sqrtm``
arithmetic with its eps fallback). Every metric is cross-checked in ``tests/model/metrics`` against
its reference implementation on the same inputs. The judges are injected (``judges.<name>.load``),
never loaded here except by the CLI, ``python -m model.metrics`` (:mod:`model.metrics.cli`), which
measures any method's videos with the same protocol (README "Evaluating any talking-face method").
"""

# Classes only: a function named like its module (``psnr``, ``fid`` ...) re-exported here would shadow
# the submodule (``from model.metrics import psnr`` must give the module).
from model.metrics.au_f1 import AUF1
from model.metrics.ccc import CCC
from model.metrics.efid import EFID
from model.metrics.fid import FID
from model.metrics.frechet import FrechetMetric, frechet_distance
from model.metrics.fvd import FVD
from model.metrics.lpips import LPIPS
from model.metrics.psnr import PSNR
from model.metrics.ssim import SSIM
from model.metrics.streaming import SumMetric
from model.metrics.sync import Sync, score_from_distances

__all__ = ["AUF1", "CCC", "EFID", "FID", "FVD", "LPIPS", "PSNR", "SSIM", "FrechetMetric", "SumMetric", "Sync",
           "frechet_distance", "score_from_distances"]
