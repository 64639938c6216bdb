"""Exponential moving average of the trained parameters (fp32 shadow copies).

``decay_t = min(decay, (1 + n) / (10 + n))`` after n updates (the usual warm-up, as diffusers'
``EMAModel``), so early averages are not dominated by the initial weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class EMA:
    """Shadows of ``named`` trainable parameters (``{name: parameter}``)."""

    def __init__(self, named: dict[str, nn.Parameter], decay: float):
        self.decay, self.updates = decay, 0
        self.params = named
        self.shadow = {n: p.detach().float().clone() for n, p in named.items()}

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for n, p in self.params.items():
            self.shadow[n].lerp_(p.detach().float(), 1.0 - d)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["shadow"]) != set(self.shadow):
            raise ValueError("EMA state does not match the trained parameters (a checkpoint of another stage or model?)")
        self.updates = int(state["updates"])
        for n, t in state["shadow"].items():
            self.shadow[n].copy_(t)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The parameters hold the averages inside the block (to save or evaluate them)."""
        backup = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(self.shadow[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(backup[n])
