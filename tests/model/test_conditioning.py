"""Conditioning: batch -> UNet/ReferenceNet conditions, and classifier-free-guidance dropout with real nulls."""

from __future__ import annotations

import pytest
import torch

from model.builder import build_components
from model.conditioning import (
    CONDITIONS,
    ConditioningParams,
    build_conditions,
    drop_masks,
    empty_text_states,
    encode_latents,
    fixed_masks,
)
from model.emotion_embed import fit_segments

from .tiny import (
    AUDIO_PROJ_KWARGS,
    EMOTION_KWARGS,
    UNET_KWARGS,
    M,
    gen,
    randn,
    tiny_model_params,
    wake_zero_outputs,
)

B, T = 3, 4
C_AUDIO = AUDIO_PROJ_KWARGS["context_frames"]


@pytest.fixture(scope="module")
def parts(sd15_dir):
    c = build_components(sd15_dir, tiny_model_params(), "cpu", seed=0)
    wake_zero_outputs(c.unet, seed=1)
    return c


@pytest.fixture(scope="module")
def null(parts):
    return empty_text_states(parts.text_encoder, parts.tokenizer)


def _batch(pixels="float32"):
    frames = lambda *s, seed: (randn(*s, seed=seed).clamp(-1, 1) if pixels == "float32"
                               else ((randn(*s, seed=seed).clamp(-1, 1) + 1) * 127.5).to(torch.uint8))
    return {
        "reference": frames(B, 3, 32, 32, seed=1), "motion_frames": frames(B, M, 3, 32, 32, seed=2),
        "frames": frames(B, T, 3, 32, 32, seed=3),
        "audio_embed": randn(B, T + 2 * C_AUDIO, AUDIO_PROJ_KWARGS["num_layers"], AUDIO_PROJ_KWARGS["feature_dim"], seed=4),
        "text_emotion": randn(B, EMOTION_KWARGS["text_dim"], seed=5).softmax(-1),
        "speech_emotion": randn(B, EMOTION_KWARGS["ser_dim"], seed=6).softmax(-1),
        "valence_arousal": randn(B, T, 2, seed=7).tanh(),
        "text_states": randn(B, 77, 32, seed=8),
    }


def _conditions(parts, null, **kw):
    return build_conditions(_batch(), null_text_states=null, vae=parts.vae, audio_proj=parts.audio_proj,
                            emotion_embed=parts.emotion_embed, **kw)


def test_shapes_of_every_condition(parts, null):
    assert null.shape == (1, 77, 32)
    c = _conditions(parts, null, drop=fixed_masks(B))
    assert c.text_states.shape == (B, 77, 32)
    assert c.reference_latents.shape == (B, 4, 16, 16) and c.motion_latents.shape == (B, 4, M, 16, 16)
    assert c.audio_tokens.shape == (B, T, AUDIO_PROJ_KWARGS["num_tokens"], UNET_KWARGS["audio_dim"])
    assert c.emotion_tokens.shape == (B, EMOTION_KWARGS["num_tokens"], UNET_KWARGS["emotion_dim"])
    assert set(c.drop) == set(CONDITIONS)
    # stage 1: no audio or emotion module, no tokens; no caption feature: the empty string's states
    batch = {k: v for k, v in _batch().items() if k in ("reference", "motion_frames")}
    one = build_conditions(batch, null_text_states=null, vae=parts.vae, drop=fixed_masks(B))
    assert one.audio_tokens is None and one.emotion_tokens is None and torch.equal(one.text_states, null.expand(B, -1, -1))


def test_nothing_dropped_with_probability_0(parts, null):
    batch = _batch()
    c = _conditions(parts, null, params=ConditioningParams(0, 0, 0, 0), generator=gen(0))
    assert not any(m.any() for m in c.drop.values())
    assert torch.equal(c.text_states, batch["text_states"])
    assert torch.equal(c.reference_latents, encode_latents(parts.vae, batch["reference"]))
    assert torch.equal(c.motion_latents, encode_latents(parts.vae, batch["motion_frames"]))
    assert c.reference_latents.abs().sum() > 0
    with torch.no_grad():
        audio = parts.audio_proj(batch["audio_embed"])[:, C_AUDIO:C_AUDIO + T]  # the rows of the window's frames
        emotion = parts.emotion_embed(batch["text_emotion"], batch["speech_emotion"],
                                      fit_segments(batch["valence_arousal"], EMOTION_KWARGS["va_segments"]))
    assert torch.allclose(c.audio_tokens, audio) and torch.allclose(c.emotion_tokens, emotion)


def test_every_condition_is_its_null_with_probability_1(parts, null):
    c = _conditions(parts, null, params=ConditioningParams(1, 1, 1, 1), generator=gen(0))
    assert all(m.all() for m in c.drop.values())
    assert torch.equal(c.text_states, null.expand(B, -1, -1))
    assert not c.reference_latents.any() and not c.motion_latents.any()
    assert not c.audio_tokens.any()  # zero tokens, not AudioProjection(zero states)
    with torch.no_grad():
        assert parts.audio_proj(torch.zeros_like(_batch()["audio_embed"])).abs().sum() > 0
    assert torch.equal(c.emotion_tokens, parts.emotion_embed.null_tokens(B))
    # one condition at a time: the others are kept
    only_audio = _conditions(parts, null, drop=fixed_masks(B, ["audio"]))
    kept = _conditions(parts, null, drop=fixed_masks(B))
    assert not only_audio.audio_tokens.any()
    assert torch.equal(only_audio.text_states, kept.text_states) and torch.equal(only_audio.reference_latents, kept.reference_latents)
    assert torch.allclose(only_audio.emotion_tokens, kept.emotion_tokens)
    with pytest.raises(ValueError, match="unknown condition 'motion'"):
        fixed_masks(B, ["motion"])


def test_drop_masks_are_seeded_and_per_sample(parts, null):
    p = ConditioningParams(0.5, 0.5, 0.5, 0.5)
    a, b = drop_masks(256, p, gen(7)), drop_masks(256, p, gen(7))
    assert all(torch.equal(a[k], b[k]) for k in CONDITIONS)
    assert any(not torch.equal(a[k], drop_masks(256, p, gen(8))[k]) for k in CONDITIONS)
    assert all(0.35 < a[k].float().mean() < 0.65 for k in CONDITIONS)
    assert not all(torch.equal(a["reference"], a[k]) for k in CONDITIONS)  # independent per condition
    # a mixed batch: exactly the masked samples get the null
    c = _conditions(parts, null, drop={k: torch.tensor([True, False, True]) for k in CONDITIONS})
    kept = _conditions(parts, null, drop=fixed_masks(B))
    assert not c.audio_tokens[0].any() and torch.allclose(c.audio_tokens[1], kept.audio_tokens[1])
    assert torch.equal(c.emotion_tokens[2], parts.emotion_embed.null_embedding) and torch.allclose(c.emotion_tokens[1], kept.emotion_tokens[1])
    with pytest.raises(ValueError, match="must be in"):
        ConditioningParams(drop_audio=1.5)


def test_uint8_frames_give_the_float_latents(parts, null):
    f = build_conditions(_batch(), null_text_states=null, vae=parts.vae, drop=fixed_masks(B))
    u = build_conditions(_batch("uint8"), null_text_states=null, vae=parts.vae, drop=fixed_masks(B))
    assert u.reference_latents.dtype == torch.float32 and u.reference_latents.shape == f.reference_latents.shape


def test_unet_forward_with_the_conditions(parts, null):
    c = _conditions(parts, null, params=ConditioningParams(0.5, 0.5, 0.5, 0.5), generator=gen(1))
    with torch.no_grad():
        features = parts.reference_net(**c.reference_net_inputs()).features
        noisy = randn(B, 4, T, 16, 16, seed=9)
        out = parts.unet(noisy, torch.tensor([10, 500, 900]), **c.unet_inputs(features)).sample
        # the conditional and the unconditional branch of inference differ
        u = _conditions(parts, null, drop=fixed_masks(B, CONDITIONS))
        out_u = parts.unet(noisy, torch.tensor([10, 500, 900]), **u.unet_inputs(parts.reference_net(**u.reference_net_inputs()).features)).sample
    assert out.shape == noisy.shape and torch.isfinite(out).all() and not torch.allclose(out, out_u)
    with pytest.raises(KeyError, match="audio_embed.*data.stage2_features"):
        build_conditions({k: v for k, v in _batch().items() if k != "audio_embed"}, null_text_states=null, vae=parts.vae,
                         audio_proj=parts.audio_proj, drop=fixed_masks(B))
