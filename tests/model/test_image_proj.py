"""ImageProjection: the reference image's CLIP embedding joins the cross-attention context of the ReferenceNet
and the DenoisingUNet through a zero-initialised projection (SD 1.5 at initialisation), dropped with the reference."""

from __future__ import annotations

import pytest
import torch

from model.builder import ImageProjParams, ModelParams, build_components
from model.conditioning import build_conditions, empty_text_states, fixed_masks
from model.image_proj import ImageProjection

from .tiny import gen, randn, tiny_model_params

B, P = 3, 768  # the tiny model params keep the paper-scale CLIP width (in_dim 768)


@pytest.fixture(scope="module")
def parts(sd15_dir):
    return build_components(sd15_dir, tiny_model_params(), "cpu", seed=0)


@pytest.fixture(scope="module")
def null(parts):
    return empty_text_states(parts.text_encoder, parts.tokenizer)


def _batch():
    return {"reference": randn(B, 3, 32, 32, seed=1).clamp(-1, 1), "text_states": randn(B, 77, 32, seed=2),
            "reference_image_embed": torch.nn.functional.normalize(randn(B, P, seed=3), dim=-1)}


def _woken(parts, tokens=1):
    proj = ImageProjection(in_dim=P, cross_attention_dim=32, tokens=tokens)
    with torch.no_grad():
        proj.proj.weight.copy_(torch.randn(proj.proj.weight.shape, generator=gen(5)) * 0.1)
    return proj


def test_the_builder_makes_it_zero_at_initialisation_with_the_unets_context_width(parts):
    proj = parts.image_proj
    assert isinstance(proj, ImageProjection) and proj.config.cross_attention_dim == parts.unet.unet.config.cross_attention_dim == 32
    assert proj.config.in_dim == P and proj.config.tokens == 1 and "image_proj" in parts.modules()
    out = proj(_batch()["reference_image_embed"])
    assert out.shape == (B, 1, 32) and not out.any()
    off = build_components(None, ModelParams(image_proj=ImageProjParams(enabled=False)), "meta")
    assert off.image_proj is None and "image_proj" not in off.modules()


@torch.no_grad()
def test_at_initialisation_both_networks_see_exactly_the_text_states(parts, null, base_unet):
    batch, keep = _batch(), fixed_masks(B)
    plain = build_conditions(batch, null_text_states=null, vae=parts.vae, drop=keep)
    with_image = build_conditions(batch, null_text_states=null, vae=parts.vae, drop=keep, image_proj=parts.image_proj)
    assert torch.equal(with_image.text_states, batch["text_states"]) and torch.equal(plain.text_states, with_image.text_states)
    # the DenoisingUNet (no reference, audio or emotion) on that context is SD 1.5's UNet
    x, t = randn(B, 4, 1, 16, 16, seed=6), torch.tensor([5, 300, 900])
    out = parts.unet(x, t, with_image.text_states).sample[:, :, 0]
    torch.testing.assert_close(out, base_unet(x[:, :, 0], t, batch["text_states"]).sample, rtol=0, atol=1e-5)


@torch.no_grad()
def test_once_trained_it_changes_the_first_positions_only_and_a_dropped_reference_gives_zero_tokens(parts, null):
    batch = _batch()
    for tokens in (1, 3):
        proj = _woken(parts, tokens)
        kept = build_conditions(batch, null_text_states=null, vae=parts.vae, drop=fixed_masks(B), image_proj=proj)
        delta = kept.text_states - batch["text_states"]
        assert delta[:, :tokens].abs().amin(dim=-1).gt(0).all() and not delta[:, tokens:].any()
        torch.testing.assert_close(delta[:, :tokens], proj(batch["reference_image_embed"]))
    # reference dropped (mask per sample): exactly the text states there, not the projection of a zero embedding
    proj = _woken(parts)
    mixed = {k: torch.tensor([True, False, False]) for k in ("reference", "caption", "audio", "emotion")}
    mixed["caption"] = torch.tensor([False, False, True])
    c = build_conditions(batch, null_text_states=null, vae=parts.vae, drop=mixed, image_proj=proj)
    assert torch.equal(c.text_states[0], batch["text_states"][0]) and not c.reference_latents[0].any()
    assert not torch.equal(c.text_states[1], batch["text_states"][1])
    # caption dropped, reference kept: the empty string's states plus the image tokens
    torch.testing.assert_close(c.text_states[2], null[0] + torch.cat([proj(batch["reference_image_embed"][2:])[0],
                                                                        torch.zeros(76, 32)]))


def test_it_trains_through_both_networks_and_errors_name_the_fix(parts, null):
    proj = ImageProjection(in_dim=P, cross_attention_dim=32)
    batch = _batch()
    c = build_conditions(batch, null_text_states=null, vae=parts.vae, drop=fixed_masks(B), image_proj=proj)
    features = parts.reference_net(**c.reference_net_inputs()).features
    out = parts.unet(randn(B, 4, 1, 16, 16, seed=7), torch.tensor([1, 2, 3]), **c.unet_inputs(features)).sample
    out.square().mean().backward()
    assert proj.proj.weight.grad.abs().sum() > 0  # zero-initialised, yet it gets a gradient at once
    with pytest.raises(KeyError, match="add clip_image to data.stage1_features"):
        build_conditions({k: v for k, v in batch.items() if k != "reference_image_embed"}, null_text_states=null, vae=parts.vae,
                         drop=fixed_masks(B), image_proj=proj)
    with pytest.raises(ValueError, match=r"model.image_proj.in_dim must equal the clip_image sidecar"):
        proj(torch.zeros(B, 16))
    with pytest.raises(ValueError, match=r"model.image_proj.tokens must be <= 77"):
        ImageProjection.add_to(batch["text_states"], torch.zeros(B, 78, 32))
