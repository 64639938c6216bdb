"""Audio projection (paper sections 3.1-3.2, figure 2a "Audio Projection").

wav2vec 2.0 hidden states of all layers, resampled to one vector per 25 fps video frame, are the
audio features: ``(B, F, num_layers, feature_dim)`` (wav2vec2-base: 13 hidden states of 768). For
each frame, the features of a window of ``2 * context_frames + 1`` frames centred on it (edges
repeat the first/last frame) are flattened and mapped by an MLP to ``num_tokens`` context tokens of
``output_dim`` channels, attended by the audio attention of every transformer block.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def frame_windows(features: torch.Tensor, context_frames: int) -> torch.Tensor:
    """``(B, F, ...) -> (B, F, 2 * context_frames + 1, ...)``: frame f gets frames
    ``f - context_frames .. f + context_frames``, indices clamped to ``[0, F - 1]``."""
    frames = features.shape[1]
    offsets = torch.arange(-context_frames, context_frames + 1, device=features.device)
    index = (torch.arange(frames, device=features.device)[:, None] + offsets[None, :]).clamp_(0, frames - 1)
    return features[:, index]


class AudioProjection(ModelMixin, ConfigMixin):
    """Per-frame audio tokens from windows of wav2vec2 hidden states.

    Args:
        num_layers: hidden states per frame (all wav2vec2 layers incl. the feature projection).
        feature_dim: channels of each hidden state.
        context_frames: frames on each side of a frame in its window.
        hidden_dim: MLP width.
        num_tokens: tokens per frame.
        output_dim: channels of a token (the UNet's ``audio_dim``).

    Input ``(B, F, num_layers, feature_dim)`` -> output ``(B, F, num_tokens, output_dim)``.
    """

    @register_to_config
    def __init__(
        self,
        num_layers: int = 13,
        feature_dim: int = 768,
        context_frames: int = 2,
        hidden_dim: int = 1024,
        num_tokens: int = 32,
        output_dim: int = 768,
    ):
        super().__init__()
        window = 2 * context_frames + 1
        self.proj = nn.Sequential(
            nn.Linear(window * num_layers * feature_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, num_tokens * output_dim),
        )
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, audio_features: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        expected = (cfg.num_layers, cfg.feature_dim)
        if audio_features.ndim != 4 or tuple(audio_features.shape[2:]) != expected:
            raise ValueError(
                f"audio_features must be (B, F, {cfg.num_layers}, {cfg.feature_dim}), got {tuple(audio_features.shape)}"
            )
        batch, frames = audio_features.shape[:2]
        windows = frame_windows(audio_features, cfg.context_frames).reshape(batch, frames, -1)
        tokens = self.proj(windows).reshape(batch, frames, cfg.num_tokens, cfg.output_dim)
        return self.norm(tokens)
