"""Checkpoint helpers shared by the judges written in plain torch: strict loading, reading a pickled
state dict, and the random BatchNorm statistics of their stand-ins."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Load ``state`` into ``model``: every key, every shape; only BatchNorm's ``num_batches_tracked`` may be
    absent (a buffer eval-mode BatchNorm never reads, which checkpoints saved before PyTorch 0.4.1 lack).
    A ``ValueError`` names every missing, unexpected and mis-shaped key."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
                 f"shape mismatches {shapes}" if shapes else ""]
        raise ValueError(f"{what} does not match {type(model).__name__}: " + "; ".join(p for p in parts if p))
    full = dict(state)
    for k in own:
        full.setdefault(k, torch.zeros_like(own[k]))  # num_batches_tracked
    model.load_state_dict(full, strict=True)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load`` (``weights_only``) of a pickled state dict, tensors only; anything else is a ``TypeError``."""
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise TypeError(f"{path}: expected a pickled state dict (name -> tensor), got {type(loaded).__name__}")
    return {str(k): v for k, v in loaded.items()}


@torch.no_grad()
def randomise_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics and affine terms (fresh ones are the identity), so a random stand-in's
    outputs vary with its input."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            m.running_var.copy_(1.0 + 0.2 * torch.rand(n, generator=gen))
            m.weight.data.copy_(1.0 + 0.1 * torch.randn(n, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=gen))
