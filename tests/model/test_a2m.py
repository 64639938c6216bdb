"""A2M: VP-flow VAE producing motion-frame latents from a reference latent and audio."""

from __future__ import annotations

import pytest
import torch

from model.a2m import A2M
from model.losses import a2m_vae_loss

from .tiny import A2M_KWARGS, B, C, H, M, W, assert_same_state, gen, public_config, randn, seeded


def _batch():
    return randn(B, C, M, H, W, seed=1), randn(B, C, H, W, seed=2), randn(B, M, 3, 8, seed=3)


def test_forward_backward_shapes():
    a2m = seeded(lambda: A2M(**A2M_KWARGS))
    motion, ref, audio = _batch()
    out = a2m(motion, ref, audio, generator=gen(0))
    assert out.sample.shape == (B, C, M, H, W)
    for t in (out.mean, out.log_std, out.z_q, out.z_p):
        assert t.shape == (B, 4, H // 4, W // 4)
    loss = a2m_vae_loss(out.sample, motion, out.mean, out.log_std, out.z_q, out.z_p, kl_weight=0.1)
    loss.total.backward()
    missing = [n for n, p in a2m.named_parameters() if p.grad is None]
    assert not missing
    # the flow starts as identity up to flips (2 flows: exactly the identity)
    assert torch.equal(out.z_p, out.z_q)


def test_posterior_sample_uses_the_given_noise():
    a2m = seeded(lambda: A2M(**A2M_KWARGS))
    motion, ref, audio = _batch()
    noise = randn(B, 4, H // 4, W // 4, seed=8)
    with torch.no_grad():
        out = a2m(motion, ref, audio, noise=noise)
    torch.testing.assert_close(out.z_q, out.mean + out.log_std.exp() * noise)


def test_generate_and_determinism():
    a = seeded(lambda: A2M(**A2M_KWARGS), seed=1)
    b = seeded(lambda: A2M(**A2M_KWARGS), seed=1)
    assert_same_state(a, b)
    _, ref, audio = _batch()
    x = a.generate(ref, audio, generator=gen(4))
    assert x.shape == (B, C, M, H, W)
    assert torch.equal(x, b.generate(ref, audio, generator=gen(4)))
    assert not torch.equal(x, a.generate(ref, audio, generator=gen(5)))
    # temperature 0 decodes z_p = 0: deterministic whatever the generator
    assert torch.equal(a.generate(ref, audio, generator=gen(1), temperature=0.0), a.generate(ref, audio, generator=gen(2), temperature=0.0))
    # audio conditions the output
    assert not torch.equal(a.generate(ref, audio, gen(4)), a.generate(ref, audio + 1.0, gen(4)))


def test_learns_a_tiny_batch():
    a2m = seeded(lambda: A2M(**A2M_KWARGS), seed=2)
    motion, ref, audio = _batch()
    opt = torch.optim.Adam(a2m.parameters(), lr=1e-3)
    losses = []
    g = gen(0)
    for _ in range(15):
        out = a2m(motion, ref, audio, generator=g)
        loss = a2m_vae_loss(out.sample, motion, out.mean, out.log_std, out.z_q, out.z_p, kl_weight=0.01).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_round_trip(tmp_path):
    a2m = seeded(lambda: A2M(**A2M_KWARGS), seed=3)
    a2m.save_pretrained(tmp_path / "a2m")
    loaded = A2M.from_pretrained(tmp_path / "a2m")
    assert public_config(loaded) == public_config(a2m) == {**A2M_KWARGS, "flow_kernel_size": 3}
    assert_same_state(a2m, loaded)
    motion, ref, audio = _batch()
    with torch.no_grad():
        assert torch.equal(a2m(motion, ref, audio, generator=gen(1)).sample, loaded(motion, ref, audio, generator=gen(1)).sample)


def test_shape_errors():
    a2m = A2M(**A2M_KWARGS)
    motion, ref, audio = _batch()
    with pytest.raises(ValueError, match="audio_features"):
        a2m(motion, ref, audio[:, :1])
    with pytest.raises(ValueError, match="multiples of 4"):
        a2m.generate(randn(B, C, 6, 6), audio)
    with pytest.raises(ValueError, match="motion_latents"):
        a2m(motion[:, :, :1], ref, audio)
