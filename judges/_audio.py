"""Waveform conventions shared by the audio judges (16 kHz mono float, per-input normalisation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SAMPLE_RATE = 16000


def zero_mean_unit_var(waveforms: torch.Tensor, attention_mask: torch.Tensor | None = None, eps: float = 1e-7) -> torch.Tensor:
    """Differentiable twin of ``Wav2Vec2FeatureExtractor(do_normalize=True)``: each row ``(B, S)`` minus
    its mean over its valid samples, divided by ``sqrt(var + eps)`` (population variance); padded
    samples (``attention_mask == 0``) become 0."""
    import torch

    if attention_mask is None:
        mean = waveforms.mean(dim=-1, keepdim=True)
        var = waveforms.var(dim=-1, unbiased=False, keepdim=True)
        return (waveforms - mean) / torch.sqrt(var + eps)
    m = attention_mask.to(waveforms.dtype)
    n = m.sum(dim=-1, keepdim=True).clamp(min=1.0)
    mean = (waveforms * m).sum(dim=-1, keepdim=True) / n
    var = (((waveforms - mean) * m) ** 2).sum(dim=-1, keepdim=True) / n
    return (waveforms - mean) / torch.sqrt(var + eps) * m
