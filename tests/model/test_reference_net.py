"""ReferenceNet: explicit per-block features, SD 1.5 initialisation, round trip."""

from __future__ import annotations

import pytest
import torch

from model.reference_net import ReferenceNet
from model.unet import DenoisingUNet

from .tiny import B, C, H, M, TEXT_DIM, TEXT_LEN, UNET_KWARGS, W, assert_same_state, public_config, randn


@pytest.fixture(scope="module")
def reference_net(sd15_dir):
    return ReferenceNet.from_sd15(sd15_dir).eval()


@torch.no_grad()
def test_features_are_returned_per_block(reference_net, sd15_dir):
    ctx = randn(B, TEXT_LEN, TEXT_DIM, seed=1)
    ref = randn(B, C, H, W, seed=2)
    motion = randn(B, C, M, H, W, seed=3)
    feats = reference_net(ref, ctx, motion).features
    unet = DenoisingUNet.from_sd15(sd15_dir, **UNET_KWARGS)
    assert sorted(feats) == sorted(unet.block_names()) == sorted(reference_net.block_names())
    # tiny backbone: 32 channels at 16x16, 64 channels at 8x8 (mid block)
    assert feats["down_blocks.0.attentions.0.transformer_blocks.0"].shape == (B, 1 + M, H * W, 32)
    assert feats["mid_block.attentions.0.transformer_blocks.0"].shape == (B, 1 + M, H * W // 4, 64)
    # images are encoded independently: the reference image's tokens do not depend on motion frames
    alone = reference_net(ref, ctx).features
    for name, tokens in alone.items():
        assert tokens.shape[1] == 1
        torch.testing.assert_close(tokens[:, 0], feats[name][:, 0], rtol=0, atol=1e-5)
    # and motion frame m's tokens are those of encoding it as a reference image
    as_ref = reference_net(motion[:, :, 1], ctx).features
    for name in feats:
        torch.testing.assert_close(as_ref[name][:, 0], feats[name][:, 2], rtol=0, atol=1e-5)


@torch.no_grad()
def test_features_are_the_norm1_output_of_each_block(reference_net):
    """The recorded tokens are exactly the spatial attention's input (norm1 output)."""
    ctx = randn(1, TEXT_LEN, TEXT_DIM, seed=1)
    ref = randn(1, C, H, W, seed=2)
    seen = {}
    blocks = dict(reference_net.unet.named_modules())
    handles = [
        blocks[name].norm1.register_forward_hook(lambda m, a, out, name=name: seen.setdefault(name, out))
        for name in reference_net.block_names()
    ]
    try:
        feats = reference_net(ref, ctx).features
    finally:
        for h in handles:
            h.remove()
    for name, tokens in feats.items():
        assert torch.equal(tokens[:, 0], seen[name])


def test_sd15_weights_and_round_trip(tmp_path, reference_net, base_unet):
    own = reference_net.unet.state_dict()
    assert own.keys() == base_unet.state_dict().keys()
    for k, v in base_unet.state_dict().items():
        assert torch.equal(own[k], v), k
    reference_net.save_pretrained(tmp_path / "ref")
    loaded = ReferenceNet.from_pretrained(tmp_path / "ref").eval()
    assert public_config(loaded) == public_config(reference_net)
    assert_same_state(reference_net, loaded)
    ctx, ref = randn(B, TEXT_LEN, TEXT_DIM), randn(B, C, H, W, seed=4)
    with torch.no_grad():
        a, b = reference_net(ref, ctx).features, loaded(ref, ctx).features
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unused_parameters_are_exactly_those_without_gradient(sd15_dir):
    net = ReferenceNet.from_sd15(sd15_dir)
    feats = net(randn(B, C, H, W), randn(B, TEXT_LEN, TEXT_DIM), randn(B, C, M, H, W, seed=1)).features
    sum(t.square().mean() for t in feats.values()).backward()
    without_grad = {n for n, p in net.named_parameters() if p.grad is None}
    assert without_grad == set(net.unused_parameter_names())
    assert "unet.conv_out.weight" in without_grad


def test_shape_errors(reference_net):
    with pytest.raises(ValueError, match="motion_latents"):
        reference_net(randn(B, C, H, W), randn(B, TEXT_LEN, TEXT_DIM), randn(B, C, H, W))
    with pytest.raises(ValueError, match="reference_latents"):
        reference_net(randn(B, C, 1, H, W), randn(B, TEXT_LEN, TEXT_DIM))


def test_gradient_checkpointing_keeps_features_and_gradients(sd15_dir):
    """Recomputing blocks in the backward pass neither changes the features nor the gradients."""
    results = []
    for checkpointing in (False, True):
        net = ReferenceNet.from_sd15(sd15_dir)
        if checkpointing:
            net.enable_gradient_checkpointing()
        net.train()
        feats = net(randn(B, C, H, W), randn(B, TEXT_LEN, TEXT_DIM), randn(B, C, M, H, W, seed=1)).features
        before = {k: v.detach().clone() for k, v in feats.items()}
        sum(t.square().mean() for t in feats.values()).backward()
        assert all(torch.equal(before[k], feats[k]) for k in feats)  # the returned dict is not rewritten
        results.append((before, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}))
    (f0, g0), (f1, g1) = results
    assert all(torch.equal(f0[k], f1[k]) for k in f0)
    assert g0.keys() == g1.keys()
    for k in g0:
        torch.testing.assert_close(g0[k], g1[k], rtol=1e-4, atol=1e-6)
