"""The streaming base of every metric, and the frame conventions they share.

State: a dict of float64 tensors of fixed shapes, every entry a SUM over the data seen (sums of
per-frame values, counts, feature sums and outer products, contingency counts). Ranks therefore
combine by adding states entry by entry, nothing else:

* in one process: ``metric.merge([state_a, state_b, ...])`` adds other metrics' ``state()`` into
  this one (the shapes must match: same judge width);
* across ``torch.distributed`` ranks: :meth:`SumMetric.all_reduce` (``dist.all_reduce(t, SUM)`` on
  each tensor, on the state's device: NCCL handles float64) after every rank has updated with its
  own clips; ``compute()`` then gives the same number on every rank as one process would on all
  the data. An ``all_gather`` of ``state()`` followed by ``merge`` is the same thing.

States are float64 so that sums over a whole test set (millions of pixels' worth of frame values,
feature outer products) keep their digits; the values are never sensitive to the order ranks or
chunks are added in beyond float64 rounding.

Frames: every image metric takes ``(N, 3, H, W)`` float RGB in [0, 1] (``(N, H, W, 3)`` uint8 is
converted by :func:`as_float_frames`, ``/ 255``); judges that take uint8 get
``round(255 x)`` (:func:`as_uint8_frames`), which returns decoded uint8 frames exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

__all__ = ["SumMetric", "as_float_frames", "as_uint8_frames"]

STATE_DTYPE = torch.float64


def as_float_frames(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(N, 3, H, W)`` float in [0, 1] (kept as given) or ``(N, H, W, 3)`` uint8 (-> ``/ 255``, float32)
    -> ``(N, 3, H, W)`` float tensor. One frame (3-D) becomes ``N = 1``."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.ndim == 3:
        t = t[None]
    if t.dtype == torch.uint8:
        if t.ndim != 4 or t.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {tuple(t.shape)}")
        return t.permute(0, 3, 1, 2).float() / 255.0
    if t.ndim != 4 or t.shape[1] != 3 or not t.is_floating_point():
        raise ValueError(f"expected (N, 3, H, W) float frames in [0, 1] or (N, H, W, 3) uint8, got {tuple(t.shape)} {t.dtype}")
    return t


def as_uint8_frames(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 numpy frames from either convention (floats: ``round(255 clamp(x, 0, 1))``)."""
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        return x[None] if x.ndim == 3 else x
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    if t.dtype == torch.uint8:
        return (t[None] if t.ndim == 3 else t).cpu().numpy()
    f = as_float_frames(t).detach()
    return (f.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def check_pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float frames, same shape."""
    p, t = as_float_frames(pred), as_float_frames(target)
    if p.shape != t.shape:
        raise ValueError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} must have one shape")
    return p, t


class SumMetric:
    """Base of the streaming metrics: ``update(...)`` adds to sum-states, ``compute()`` reads them,
    ``reset()`` zeroes them; ``state()`` / ``merge(states)`` / ``all_reduce()`` combine ranks
    (module docstring). Subclasses define :meth:`shapes` (state name -> shape) and :meth:`compute`."""

    def __init__(self) -> None:
        self._state: dict[str, torch.Tensor] = {}
        self.reset()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def reset(self) -> None:
        self._state = {k: torch.zeros(s, dtype=STATE_DTYPE) for k, s in self.shapes().items()}

    def _add(self, name: str, value: torch.Tensor | float) -> None:
        v = torch.as_tensor(value, dtype=STATE_DTYPE).detach().to(self._state[name].device)
        self._state[name] += v

    def state(self) -> dict[str, torch.Tensor]:
        """A copy of the sum-states (float64 tensors; add them to combine ranks)."""
        return {k: v.clone() for k, v in self._state.items()}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the states with ``state`` (e.g. cached reference statistics)."""
        self.reset()
        self.merge([state])

    def merge(self, states: Iterable[Mapping[str, torch.Tensor]]) -> SumMetric:
        """Add other metrics' :meth:`state` into this one (returns self)."""
        for st in states:
            if set(st) != set(self._state):
                raise ValueError(f"state keys {sorted(st)} do not match {sorted(self._state)}")
            for k, v in st.items():
                v = torch.as_tensor(v, dtype=STATE_DTYPE)
                if tuple(v.shape) != tuple(self._state[k].shape):
                    raise ValueError(f"state {k!r} has shape {tuple(v.shape)}, this metric's is {tuple(self._state[k].shape)}")
                self._state[k] += v.to(self._state[k].device)
        return self

    def all_reduce(self, group=None) -> SumMetric:
        """Sum the states over ``torch.distributed`` ranks in place (no-op without an initialised group)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for v in self._state.values():
                dist.all_reduce(v, op=dist.ReduceOp.SUM, group=group)
        return self

    def to(self, device: str | torch.device) -> SumMetric:
        """Move the states (e.g. to the rank's GPU before an NCCL ``all_reduce``)."""
        self._state = {k: v.to(device) for k, v in self._state.items()}
        return self

    def compute(self) -> float | dict[str, float]:
        raise NotImplementedError


class MeanOfFrames(SumMetric):
    """A per-frame value averaged over every frame seen: states ``total`` and ``count``."""

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"total": (), "count": ()}

    def _add_frames(self, values: torch.Tensor) -> None:
        self._add("total", values.detach().double().sum().cpu())
        self._add("count", float(values.numel()))

    def compute(self) -> float:
        n = float(self._state["count"])
        return float(self._state["total"]) / n if n else float("nan")
