"""Multi-modal emotion embedding (paper section 3.6, eq. 1).

    E = Concat(E_t, E_ser, E_va)                                            (1)

``E_t``: text-emotion scores of the Whisper transcript (emotion-english-distilroberta, 7 classes);
``E_ser``: speech-emotion scores (SER, e.g. 4 classes); ``E_va``: valence/arousal of K
50%-overlapping audio segments, ``(K, 2)``, concatenated over segments. ``E`` is mapped by an MLP to
``num_tokens`` tokens of ``output_dim`` channels for the emotion cross-attention of the UNet.

Classifier-free guidance: a learned null embedding (``num_tokens`` tokens) replaces the tokens of
the samples in ``drop_mask`` (training dropout) or of the unconditional branch (``null_tokens``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def fit_segments(valence_arousal: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Linearly resample a VA sequence ``(B, K, 2)`` to ``(B, num_segments, 2)`` (identity if K fits),
    so that clips of any length give the fixed-size ``E_va`` of eq. 1."""
    if valence_arousal.shape[1] == num_segments:
        return valence_arousal
    resampled = F.interpolate(valence_arousal.transpose(1, 2), size=num_segments, mode="linear", align_corners=True)
    return resampled.transpose(1, 2)


def cfg_drop_mask(batch_size: int, probability: float, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """``(B,)`` bool: True where the condition is dropped (replaced by the null embedding)."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"drop probability must be in [0, 1], got {probability}")
    return torch.rand(batch_size, generator=generator, device=device) < probability


class EmotionEmbedding(ModelMixin, ConfigMixin):
    """Emotion tokens from text emotion, speech emotion and valence/arousal (eq. 1).

    Args:
        text_dim: size of ``E_t`` (text-emotion classes).
        ser_dim: size of ``E_ser`` (speech-emotion classes).
        va_segments: K, segments of ``E_va`` (use ``fit_segments`` for other lengths).
        va_dim: values per segment (valence, arousal).
        hidden_dim: MLP width.
        num_tokens: N, output tokens.
        output_dim: channels of a token (the UNet's ``emotion_dim``).

    Inputs ``(B, text_dim)``, ``(B, ser_dim)``, ``(B, va_segments, va_dim)`` -> ``(B, N, output_dim)``.
    """

    @register_to_config
    def __init__(
        self,
        text_dim: int = 7,
        ser_dim: int = 4,
        va_segments: int = 8,
        va_dim: int = 2,
        hidden_dim: int = 512,
        num_tokens: int = 4,
        output_dim: int = 768,
    ):
        super().__init__()
        in_dim = text_dim + ser_dim + va_segments * va_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, num_tokens * output_dim),
        )
        self.norm = nn.LayerNorm(output_dim)
        self.null_embedding = nn.Parameter(torch.randn(num_tokens, output_dim) * 0.02)

    def concat(self, text_emotion: torch.Tensor, speech_emotion: torch.Tensor, valence_arousal: torch.Tensor) -> torch.Tensor:
        """Eq. 1: ``E = Concat(E_t, E_ser, E_va)``, ``(B, text_dim + ser_dim + K * va_dim)``."""
        cfg = self.config
        batch = text_emotion.shape[0]
        shapes = {
            "text_emotion": (tuple(text_emotion.shape), (batch, cfg.text_dim)),
            "speech_emotion": (tuple(speech_emotion.shape), (batch, cfg.ser_dim)),
            "valence_arousal": (tuple(valence_arousal.shape), (batch, cfg.va_segments, cfg.va_dim)),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{name} must be {want}, got {got}")
        return torch.cat([text_emotion, speech_emotion, valence_arousal.flatten(1)], dim=1)

    def null_tokens(self, batch_size: int) -> torch.Tensor:
        """The learned null embedding for ``batch_size`` samples, ``(B, N, output_dim)``."""
        return self.null_embedding[None].expand(batch_size, -1, -1)

    def forward(
        self,
        text_emotion: torch.Tensor,
        speech_emotion: torch.Tensor,
        valence_arousal: torch.Tensor,
        drop_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Emotion tokens ``(B, N, output_dim)``; rows where ``drop_mask`` (``(B,)`` bool) is True are
        the null embedding (classifier-free guidance dropout)."""
        cfg = self.config
        embedding = self.concat(text_emotion, speech_emotion, valence_arousal)
        tokens = self.norm(self.mlp(embedding).reshape(-1, cfg.num_tokens, cfg.output_dim))
        if drop_mask is not None:
            if drop_mask.shape != (tokens.shape[0],):
                raise ValueError(f"drop_mask must be (B,)={tokens.shape[0]}, got {tuple(drop_mask.shape)}")
            null = self.null_tokens(tokens.shape[0]).to(tokens.dtype)
            tokens = torch.where(drop_mask.to(tokens.device)[:, None, None], null, tokens)
        return tokens
