"""The resumable position of a loader (saved with a checkpoint, given back to ``ClipWindows``)."""

from __future__ import annotations

from typing import Any

import torch


class LoaderState:
    """The resumable position of a loader: feed it every batch, save ``state_dict()`` with a checkpoint."""

    def __init__(self, epoch: int = 0):
        self.epoch = epoch
        self.positions: dict[int, int] = {}

    def update(self, batch: dict[str, Any]) -> None:
        for w, pos in zip(torch.as_tensor(batch["worker"]).tolist(), torch.as_tensor(batch["position"]).tolist()):
            self.positions[w] = max(self.positions.get(w, 0), pos)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "positions": dict(self.positions)}
