"""Tiny component configurations and helpers shared by the model tests."""

from __future__ import annotations

import torch
from torch import nn

B, C, F, H, W = 2, 4, 3, 16, 16  # videos, latent channels, frames, latent height/width (tiny SD)
M = 2  # motion frames
TEXT_LEN, TEXT_DIM = 5, 32  # tiny CLIP text states

UNET_KWARGS = {"audio_dim": 24, "emotion_dim": 32}
AUDIO_PROJ_KWARGS = {"num_layers": 3, "feature_dim": 8, "context_frames": 1, "hidden_dim": 32, "num_tokens": 4, "output_dim": 24}
EMOTION_KWARGS = {"text_dim": 7, "ser_dim": 4, "va_segments": 4, "va_dim": 2, "hidden_dim": 32, "num_tokens": 3, "output_dim": 32}
A2M_KWARGS = {
    "latent_channels": 4,
    "motion_frames": M,
    "audio_layers": 3,
    "audio_dim": 8,
    "cond_dim": 16,
    "hidden_channels": 32,
    "num_downsamples": 2,
    "z_channels": 4,
    "norm_num_groups": 8,
    "flow_hidden_channels": 16,
    "flow_num_flows": 2,
    "flow_layers_per_coupling": 1,
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed))


def seeded(factory, seed: int = 0):
    """Build ``factory()`` with a fixed seed without touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def wake_zero_outputs(module: nn.Module, seed: int = 0, scale: float = 0.05) -> None:
    """Give every zero-initialised output projection (added attentions, flow couplings, image projection) random
    weights, as training would, so that those modules contribute."""
    from model.attention import TemporalAttention, ZeroOutCrossAttention
    from model.image_proj import ImageProjection
    from model.vp_flow import ResidualCouplingLayer

    g = gen(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (TemporalAttention, ZeroOutCrossAttention)):
                out = m.attn.to_out[0]
            elif isinstance(m, ResidualCouplingLayer):
                out = m.post
            elif isinstance(m, ImageProjection):
                out = m.proj
            else:
                continue
            out.weight.copy_(torch.randn(out.weight.shape, generator=g) * scale)
            out.bias.copy_(torch.randn(out.bias.shape, generator=g) * scale)


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def public_config(model) -> dict:
    """A model's config without the private ``_`` entries (name, version, path)."""
    return {k: v for k, v in dict(model.config).items() if not k.startswith("_")}


def tiny_model_params(**conditioning):
    """``ModelParams`` of the tiny components above (``conditioning``: ConditioningParams fields)."""
    from model.builder import (
        A2MParams,
        AudioProjParams,
        EmotionEmbedParams,
        ModelParams,
        UNetParams,
        VPFlowParams,
    )
    from model.conditioning import ConditioningParams

    a2m = {k: v for k, v in A2M_KWARGS.items() if not k.startswith("flow_")}
    flow = {k[len("flow_"):]: v for k, v in A2M_KWARGS.items() if k.startswith("flow_")}
    return ModelParams(unet=UNetParams(**UNET_KWARGS), audio_proj=AudioProjParams(**AUDIO_PROJ_KWARGS),
                       emotion_embed=EmotionEmbedParams(**EMOTION_KWARGS), a2m=A2MParams(**a2m, flow=VPFlowParams(**flow)),
                       conditioning=ConditioningParams(**conditioning))
