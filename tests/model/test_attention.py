"""The added attention modules in isolation."""

from __future__ import annotations

import torch

from model.attention import AudioAttention, TemporalAttention, sinusoidal_positions

from .tiny import randn, seeded


def _awake(module, seed=0):
    from .tiny import wake_zero_outputs

    wake_zero_outputs(module, seed=seed, scale=0.5)
    return module


@torch.no_grad()
def test_zero_initialised_outputs():
    temporal = TemporalAttention(16, 2, 8)
    audio = AudioAttention(16, 12, 2, 8)
    x = randn(6, 5, 16)
    assert torch.equal(temporal(x, num_frames=3), torch.zeros_like(x))
    assert torch.equal(audio(x, randn(6, 4, 12)), torch.zeros_like(x))


@torch.no_grad()
def test_temporal_attention_is_per_position_across_frames():
    temporal = _awake(seeded(lambda: TemporalAttention(16, 2, 8)))
    batch, frames, length = 2, 3, 5
    x = randn(batch * frames, length, 16, seed=1)
    motion = randn(batch, 2, length, 16, seed=2)
    out = temporal(x, frames, motion)
    assert out.shape == x.shape
    # position 0 of video 0 depends on that position's frames and motion tokens only
    x2 = x.clone()
    x2[0:frames, 1] += 1.0  # another position, same video
    x2[frames:, 0] += 1.0  # same position, other video
    out2 = temporal(x2, frames, motion)
    assert torch.allclose(out[0:frames, 0], out2[0:frames, 0], atol=1e-6)
    # motion frames are attended (prepended on the frame axis)
    motion2 = motion.clone()
    motion2[0, :, 0] += 1.0
    out3 = temporal(x, frames, motion2)
    assert (out3[0:frames, 0] - out[0:frames, 0]).abs().max() > 1e-4
    assert torch.allclose(out3[frames:], out[frames:], atol=1e-6)


@torch.no_grad()
def test_temporal_attention_matches_explicit_computation():
    """Hand-rolled reference: queries = frames, keys/values = [motion, frames] + positions."""
    temporal = _awake(seeded(lambda: TemporalAttention(8, 1, 8)))
    frames, length, m = 2, 1, 1
    x = randn(frames, length, 8, seed=3)
    motion = randn(1, m, length, 8, seed=4)
    seq = torch.cat([motion[0, :, 0], x[:, 0]], dim=0) + sinusoidal_positions(m + frames, 8)
    a = temporal.attn
    q, k, v = a.to_q(seq[m:]), a.to_k(seq), a.to_v(seq)
    weights = torch.softmax(q @ k.T / 8**0.5, dim=-1)
    expected = a.to_out[0](weights @ v)
    torch.testing.assert_close(temporal(x, frames, motion)[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_sinusoidal_positions():
    pe = sinusoidal_positions(4, 6)
    assert pe.shape == (4, 6)
    assert torch.equal(pe[0], torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(pe[1, 0], torch.sin(torch.tensor(1.0)))
