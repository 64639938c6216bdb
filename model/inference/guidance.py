"""Classifier-free guidance over batched branches (Ho & Salimans 2022; per-condition form as in
InstructPix2Pix / Hallo's multi-condition guidance).

A step evaluates the UNet once on ``R`` branches stacked on the batch axis, ``(R * B, C, F, h, w)``,
branch ``r`` with the conditions ``branches[r]`` dropped (their real nulls, :mod:`model.conditioning`),
and combines the predictions (epsilon or v alike: guidance is linear in the prediction).
"""

from __future__ import annotations

import torch

from model.conditioning import fixed_masks

from .params import GuidanceParams


def branch_masks(params: GuidanceParams, batch_size: int, device=None) -> dict[str, torch.Tensor]:
    """Drop masks ``{condition: (R * B,) bool}`` of the stacked branches (branch-major)."""
    masks = [fixed_masks(batch_size, dropped, device) for dropped in params.branches()]
    return {k: torch.cat([m[k] for m in masks]) for k in masks[0]}


def combine(prediction: torch.Tensor, params: GuidanceParams) -> torch.Tensor:
    """``(R * B, ...)`` branch predictions -> the guided ``(B, ...)`` prediction."""
    branches = params.branches()
    parts = prediction.chunk(len(branches))
    if len(branches) == 1:
        return parts[0]
    full = parts[0]
    if params.per_condition:
        out = full.clone()
        for (dropped,), part in zip(branches[1:], parts[1:]):
            out = out + (params.per_condition[dropped] - 1.0) * (full - part)
        return out
    return parts[1] + params.scale * (full - parts[1])
