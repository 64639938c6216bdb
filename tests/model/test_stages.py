"""Stage freezing: gradients reach exactly the parameters each stage trains."""

from __future__ import annotations

import pytest
import torch

from model.builder import build_components
from model.losses import a2m_vae_loss, diffusion_loss
from model.stages import set_stage

from .tiny import M, randn, tiny_model_params, wake_zero_outputs

B, F = 2, 3


def _components(sd15_dir, awake: bool):
    parts = build_components(sd15_dir, tiny_model_params(), "cpu", seed=0)
    c = parts.modules()
    if awake:
        wake_zero_outputs(c["unet"], seed=1)
        wake_zero_outputs(c["a2m"], seed=2)
        wake_zero_outputs(c["image_proj"], seed=3)
    return c, parts.tokenizer


def _step(stage: str, c: dict, tokenizer) -> None:
    """One training forward/backward through every component a stage's step touches, frozen ones too."""
    ids = tokenizer(["a woman talking"] * B, padding="max_length", max_length=16, truncation=True, return_tensors="pt").input_ids
    text = c["text_encoder"](ids).last_hidden_state
    vae, scale = c["vae"], c["vae"].config.scaling_factor
    frames = 1 if stage == "stage1" else F
    video = randn(B * (1 + M + frames), 3, 32, 32, seed=4).clamp(-1, 1)
    latents = (vae.encode(video).latent_dist.mean * scale).reshape(B, 1 + M + frames, 4, 16, 16)
    ref, motion, target = latents[:, 0], latents[:, 1 : 1 + M].transpose(1, 2), latents[:, 1 + M :].transpose(1, 2)
    if stage == "a2m":
        out = c["a2m"](motion, ref, randn(B, M, 3, 8, seed=5))
        a2m_vae_loss(out.sample, motion, out.mean, out.log_std, out.z_q, out.z_p).total.backward()
        return
    text = c["image_proj"].add_to(text, c["image_proj"](randn(B, c["image_proj"].config.in_dim, seed=8)))  # figure 2a's CLIP path
    feats = c["reference_net"](ref, text, motion).features
    audio = emotion = None
    if stage == "stage2":
        audio = c["audio_proj"](randn(B, F, 3, 8, seed=6))
        emotion = c["emotion_embed"](randn(B, 7), randn(B, 4), randn(B, 4, 2), drop_mask=torch.tensor([True, False]))
    noise = randn(*target.shape, seed=7)
    timesteps = torch.tensor([100, 800])
    pred = c["unet"](target + noise, timesteps, text, reference_features=feats, audio_tokens=audio, emotion_tokens=emotion).sample
    diffusion_loss(pred, noise).backward()


@pytest.mark.parametrize("stage", ["stage1", "stage2", "a2m"])
def test_gradients_reach_exactly_the_trained_parameters(sd15_dir, stage):
    c, tokenizer = _components(sd15_dir, awake=True)
    trainable = {id(p) for p in set_stage(stage, **c)}
    _step(stage, c, tokenizer)
    for comp, module in c.items():
        for name, p in module.named_parameters():
            if id(p) in trainable:
                assert p.requires_grad, (comp, name)
                assert p.grad is not None and p.grad.abs().sum() > 0, (stage, comp, name)
            else:
                assert not p.requires_grad and p.grad is None, (stage, comp, name)


def test_stage_sets(sd15_dir):
    c, _ = _components(sd15_dir, awake=False)
    count = lambda params: sum(p.numel() for p in params)  # noqa: E731
    unet = c["unet"]
    added = {id(p) for k in ("temporal", "audio", "emotion") for m in unet.added_modules(k) for p in m.parameters()}
    unused = set(c["reference_net"].unused_parameter_names())
    stage1 = set_stage("stage1", **c)
    assert count(stage1) == count(p for p in unet.parameters() if id(p) not in added) + count(
        p for n, p in c["reference_net"].named_parameters() if n not in unused
    ) + count(c["image_proj"].parameters())
    stage2 = set_stage("stage2", **c)
    assert count(stage2) == count(p for p in unet.parameters() if id(p) in added) + count(
        c["audio_proj"].parameters()
    ) + count(c["emotion_embed"].parameters())
    assert {id(p) for p in set_stage("a2m", **c)} == {id(p) for p in c["a2m"].parameters()}
    for stage in ("stage1", "stage2", "a2m"):
        set_stage(stage, **c)
        assert not any(p.requires_grad for k in ("vae", "text_encoder") for p in c[k].parameters())
    with pytest.raises(ValueError, match="stage must be"):
        set_stage("stage3", **c)
    with pytest.raises(ValueError, match="none of the given"):
        set_stage("a2m", unet=unet)


def test_fresh_stage2_modules_receive_gradients(sd15_dir):
    """At SD 1.5 initialisation (zero output projections) every stage-2 parameter is still reached."""
    c, tokenizer = _components(sd15_dir, awake=False)
    trainable = set_stage("stage2", **c)
    _step("stage2", c, tokenizer)
    assert all(p.grad is not None for p in trainable)
    outs = [m.attn.to_out[0].weight for k in ("temporal", "audio", "emotion") for m in c["unet"].added_modules(k)]
    assert all(w.grad.abs().sum() > 0 for w in outs)
