"""DenoisingUNet: SD 1.5 equivalence at initialisation, the four attentions, round trips."""

from __future__ import annotations

import pytest
import torch

from model.unet import DenoisingUNet
from model.reference_net import ReferenceNet

from .tiny import B, C, F, H, M, TEXT_DIM, TEXT_LEN, UNET_KWARGS, W, assert_same_state, public_config, randn, seeded, wake_zero_outputs


@pytest.fixture(scope="module")
def unet(sd15_dir):
    return DenoisingUNet.from_sd15(sd15_dir, **UNET_KWARGS).eval()


@pytest.fixture(scope="module")
def inputs():
    return {
        "sample": randn(B, C, F, H, W, seed=1),
        "timestep": torch.tensor([10, 700]),
        "encoder_hidden_states": randn(B, TEXT_LEN, TEXT_DIM, seed=2),
    }


def _audio(seed=3):
    return randn(B, F, 4, UNET_KWARGS["audio_dim"], seed=seed)


def _emotion(seed=4):
    return randn(B, 3, UNET_KWARGS["emotion_dim"], seed=seed)


@torch.no_grad()
def test_no_signal_reproduces_sd15_frame_by_frame(unet, base_unet, inputs):
    x, t, ctx = inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]
    out = unet(x, t, ctx).sample
    assert out.shape == (B, C, F, H, W)
    for f in range(F):
        expected = base_unet(x[:, :, f], t, ctx).sample
        torch.testing.assert_close(out[:, :, f], expected, rtol=0, atol=1e-5)
    # The same B * F images through the base UNet in one batch: bit-identical.
    images = x.permute(0, 2, 1, 3, 4).reshape(B * F, C, H, W)
    batched = base_unet(images, t.repeat_interleave(F), ctx.repeat_interleave(F, 0)).sample
    assert torch.equal(out, batched.reshape(B, F, C, H, W).permute(0, 2, 1, 3, 4))


@torch.no_grad()
def test_untrained_audio_and_emotion_modules_change_nothing(unet, inputs):
    plain = unet(**inputs).sample
    conditioned = unet(**inputs, audio_tokens=_audio(), emotion_tokens=_emotion()).sample
    assert torch.equal(plain, conditioned)


def test_from_sd15_weights(unet, base_unet):
    base = base_unet.state_dict()
    own = unet.unet.state_dict()
    for key, value in base.items():
        assert torch.equal(own[key], value), key
    added = [k for k in own if k not in base]
    assert added and all(".processor." in k for k in added)
    for name, block in [(n, m) for n, m in unet.unet.named_modules() if n.endswith("transformer_blocks.0")]:
        for proc in (block.attn1.processor, block.attn2.processor):
            for sub in ("temporal", "audio", "emotion"):
                if hasattr(proc, sub):
                    out = getattr(proc, sub).attn.to_out[0]
                    assert not out.weight.any() and not out.bias.any(), (name, sub)
        # decoupled emotion attention starts from the text cross-attention's projections
        assert torch.equal(block.attn2.processor.emotion.attn.to_k.weight, block.attn2.to_k.weight)


@torch.no_grad()
def test_each_signal_reaches_the_output_once_trained(unet, inputs):
    model = seeded(lambda: DenoisingUNet(**unet.config)).eval()
    model.load_state_dict(unet.state_dict())
    wake_zero_outputs(model, seed=7)
    reference_net = ReferenceNet.from_base(_base_of(unet)).eval()
    feats = reference_net(randn(B, C, H, W, seed=5), inputs["encoder_hidden_states"], randn(B, C, M, H, W, seed=6)).features
    plain = model(**inputs).sample
    for kwargs in ({"audio_tokens": _audio()}, {"emotion_tokens": _emotion()}, {"reference_features": feats}):
        changed = model(**inputs, **kwargs).sample
        assert (changed - plain).abs().max() > 1e-4, list(kwargs)
    # audio tokens are per frame: changing frame 1's audio changes frame 1 (and, through the temporal
    # attention, the others), while audio of frames is not shared across videos
    audio = _audio()
    a = model(**inputs, audio_tokens=audio).sample
    audio2 = audio.clone()
    audio2[1, 1] += 1.0
    b = model(**inputs, audio_tokens=audio2).sample
    assert torch.equal(a[0], b[0]) and (a[1, :, 1] - b[1, :, 1]).abs().max() > 1e-5


def _base_of(unet):
    from diffusers import UNet2DConditionModel

    base = UNet2DConditionModel(**unet.config.backbone)
    base.load_state_dict({k: v for k, v in unet.unet.state_dict().items() if ".processor." not in k})
    return base


@torch.no_grad()
def test_temporal_attention_mixes_frames_only_once_trained(unet, inputs):
    x = inputs["sample"]
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # change frame 0 only
    fresh = unet(x2, inputs["timestep"], inputs["encoder_hidden_states"]).sample
    base = unet(**inputs).sample
    assert torch.equal(fresh[:, :, 1:], base[:, :, 1:])  # frames independent at init
    model = DenoisingUNet(**unet.config).eval()
    model.load_state_dict(unet.state_dict())
    wake_zero_outputs(model, seed=3)
    a = model(**inputs).sample
    b = model(x2, inputs["timestep"], inputs["encoder_hidden_states"]).sample
    assert (a[:, :, 1:] - b[:, :, 1:]).abs().max() > 1e-5


def test_forward_backward_all_signals(sd15_dir, inputs):
    model = DenoisingUNet.from_sd15(sd15_dir, **UNET_KWARGS)
    wake_zero_outputs(model, seed=1)
    reference_net = ReferenceNet.from_sd15(sd15_dir)
    ref = randn(B, C, H, W, seed=5)
    motion = randn(B, C, M, H, W, seed=6)
    feats = reference_net(ref, inputs["encoder_hidden_states"], motion).features
    audio = _audio().requires_grad_(True)
    emotion = _emotion().requires_grad_(True)
    out = model(**inputs, reference_features=feats, audio_tokens=audio, emotion_tokens=emotion).sample
    assert out.shape == (B, C, F, H, W)
    out.square().mean().backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0
    assert emotion.grad is not None and emotion.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())
    unused = set(reference_net.unused_parameter_names())
    for name, p in reference_net.named_parameters():
        assert (p.grad is None) == (name in unused), name


def test_gradient_checkpointing_gives_same_gradients(sd15_dir, inputs):
    grads = []
    for checkpointing in (False, True):
        model = seeded(lambda: DenoisingUNet.from_sd15(sd15_dir, **UNET_KWARGS), seed=3)
        wake_zero_outputs(model, seed=2)
        if checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        out = model(**inputs, audio_tokens=_audio(), emotion_tokens=_emotion()).sample
        out.square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6)


@torch.no_grad()
def test_save_load_round_trip(tmp_path, unet, inputs):
    model = DenoisingUNet(**unet.config).eval()
    model.load_state_dict(unet.state_dict())
    wake_zero_outputs(model, seed=4)
    model.save_pretrained(tmp_path / "unet")
    loaded = DenoisingUNet.from_pretrained(tmp_path / "unet").eval()
    assert public_config(loaded) == public_config(model)
    assert_same_state(model, loaded)
    kwargs = {"audio_tokens": _audio(), "emotion_tokens": _emotion()}
    assert torch.equal(model(**inputs, **kwargs).sample, loaded(**inputs, **kwargs).sample)


@torch.no_grad()
def test_determinism(inputs, sd15_dir):
    from core.sd15 import backbone_config
    from diffusers import UNet2DConditionModel

    backbone = backbone_config(UNet2DConditionModel.load_config(str(sd15_dir / "unet")))
    a = seeded(lambda: DenoisingUNet(backbone=backbone, **UNET_KWARGS), seed=11).eval()
    b = seeded(lambda: DenoisingUNet(backbone=backbone, **UNET_KWARGS), seed=11).eval()
    assert_same_state(a, b)
    wake_zero_outputs(a, seed=0)
    wake_zero_outputs(b, seed=0)
    kwargs = {"audio_tokens": _audio(), "emotion_tokens": _emotion()}
    assert torch.equal(a(**inputs, **kwargs).sample, b(**inputs, **kwargs).sample)


def test_concise_shape_errors(unet, inputs):
    with pytest.raises(ValueError, match=r"\(B, C, F, H, W\)"):
        unet(inputs["sample"][:, :, 0], inputs["timestep"], inputs["encoder_hidden_states"])
    with pytest.raises(ValueError, match="audio_tokens"):
        unet(**inputs, audio_tokens=randn(B, F + 1, 4, UNET_KWARGS["audio_dim"]))
    with pytest.raises(ValueError, match="emotion_tokens"):
        unet(**inputs, emotion_tokens=randn(B, UNET_KWARGS["emotion_dim"]))
    bad = {name: randn(B, 1, 3, 7) for name in unet.block_names()}
    with pytest.raises(ValueError, match="reference tokens"):
        unet(**inputs, reference_features=bad)
    with pytest.raises(KeyError, match="no entry"):
        unet(**inputs, reference_features={})
