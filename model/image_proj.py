"""Image projection: the reference image's CLIP image embedding in the cross-attention context (paper
figure 2a, "CLIP" on the reference image; sections 3.3-3.4).

The frozen CLIP ViT-L/14 image encoder (:mod:`judges.clip_image`, cached per frame by the
``clip_image`` feature; the loader puts the reference frame's row in every sample as
``reference_image_embed``) gives one ``(in_dim,)`` embedding of the reference image. This module maps
it to ``tokens`` vectors of the UNet's ``cross_attention_dim`` that are ADDED to the first ``tokens``
positions of the caption's CLIP text states, the cross-attention context of both the ReferenceNet and
the DenoisingUNet::

    embed (B, in_dim) -> LayerNorm -> Linear (zero-initialised) -> (B, tokens, D)
    context = text_states (B, L, D);  context[:, :tokens] += image tokens

Why added, not appended: appending image tokens to the context changes every cross-attention's
softmax even when the tokens are zero (a zero key still takes a share of the attention weights,
``exp(0)`` in the denominator), so the networks would no longer equal SD 1.5 at initialisation.
Added through a zero-initialised projection, the context is exactly the text states at
initialisation (the UNet and ReferenceNet equal SD 1.5; tested), and no attention processor of
either network changes. The first position is the text encoder's BOS state, which is the same for
every caption (CLIP's text encoder is causal: BOS sees only itself), so with ``tokens=1`` (default)
the image takes a slot of its own whose key differs from the words' keys: a real attention slot, not
a uniform bias (a vector added to EVERY position would shift all keys alike, which the softmax
cancels, leaving only a constant value offset). ``tokens > 1`` also adds to the first words' states.

The CFG null (reference dropped, :mod:`model.conditioning`): the image tokens are exactly zero, so the
context is the caption's (or the empty string's) text states alone, as SD 1.5 sees them.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ImageProjection(ModelMixin, ConfigMixin):
    """CLIP image embedding -> image tokens added to the text context (module docstring).

    Args:
        in_dim: the CLIP image embedding's size (768 for ViT-L/14's projection; 16 for the tiny stand-in).
        cross_attention_dim: the UNet's (and ReferenceNet's) context width D (768 in SD 1.5).
        tokens: context positions the image is added to (from the first, BOS).

    ``forward``: ``(B, in_dim)`` -> ``(B, tokens, cross_attention_dim)``; :meth:`add_to` adds them to
    ``(B, L, D)`` text states.
    """

    @register_to_config
    def __init__(self, in_dim: int = 768, cross_attention_dim: int = 768, tokens: int = 1):
        super().__init__()
        if in_dim < 1 or cross_attention_dim < 1 or tokens < 1:
            raise ValueError("in_dim, cross_attention_dim and tokens must be >= 1")
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, tokens * cross_attention_dim)
        nn.init.zeros_(self.proj.weight)  # zero output at initialisation: the context is the text states alone
        nn.init.zeros_(self.proj.bias)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if image_embeds.ndim != 2 or image_embeds.shape[1] != cfg.in_dim:
            raise ValueError(f"image_embeds must be (B, {cfg.in_dim}), got {tuple(image_embeds.shape)} "
                             f"(model.image_proj.in_dim must equal the clip_image sidecar's embedding size)")
        return self.proj(self.norm(image_embeds)).reshape(image_embeds.shape[0], cfg.tokens, cfg.cross_attention_dim)

    @staticmethod
    def add_to(text_states: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """``text_states`` ``(B, L, D)`` with ``image_tokens`` ``(B, N, D)`` added to positions ``0 .. N-1``."""
        n = image_tokens.shape[1]
        if image_tokens.shape[0] != text_states.shape[0] or image_tokens.shape[2] != text_states.shape[2] or n > text_states.shape[1]:
            raise ValueError(f"image tokens {tuple(image_tokens.shape)} do not fit the text states {tuple(text_states.shape)}: "
                             f"model.image_proj.tokens must be <= {text_states.shape[1]} and the widths equal")
        pad = image_tokens.new_zeros(text_states.shape[0], text_states.shape[1] - n, text_states.shape[2])
        return text_states + torch.cat([image_tokens.to(text_states.dtype), pad.to(text_states.dtype)], dim=1)
