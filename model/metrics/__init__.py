"""Evaluation metrics of the paper's Table 1 (DESIGN section 9): PSNR, SSIM, LPIPS, FID, FVD, E-FID,
AU F1, Sync (SyncNet confidence), CCC of valence and arousal.

The room is empty for now; each metric will come as a pair, torchmetrics-style:

- a functional form, ``metric(preds, target, ...) -> Tensor``, pure and batched;
- a streaming class with ``update(preds, target)`` / ``compute()`` / ``reset()`` whose states
  (sums, counts, feature statistics) reduce across ranks, so a whole test set is never held.

Every metric is cross-checked in its tests against its reference implementation (the published
code or torchmetrics where it exists) on the same inputs. The frozen perception networks a metric
needs (LPIPS, Inception, I3D, SyncNet, AU, face 3D, VA judges) come from the ``judges`` package,
never loaded here; this package holds only the arithmetic around them.
"""
