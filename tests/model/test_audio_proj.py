"""AudioProjection: windows of wav2vec2 hidden states -> per-frame tokens."""

from __future__ import annotations

import pytest
import torch

from model.audio_proj import AudioProjection, frame_windows

from .tiny import AUDIO_PROJ_KWARGS, assert_same_state, public_config, randn, seeded


def test_frame_windows_clamp_at_the_edges():
    x = torch.arange(4.0).reshape(1, 4)  # frames 0..3
    w = frame_windows(x, context_frames=1)
    assert w.tolist() == [[[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]]
    y = randn(2, 5, 3, 8)
    wy = frame_windows(y, 2)
    assert wy.shape == (2, 5, 5, 3, 8)
    assert torch.equal(wy[:, 2], y)  # the centred window of frame 2 of 5 is the whole clip


def test_shapes_backward_and_locality():
    proj = seeded(lambda: AudioProjection(**AUDIO_PROJ_KWARGS))
    feats = randn(2, 6, 3, 8, seed=1).requires_grad_(True)
    tokens = proj(feats)
    assert tokens.shape == (2, 6, 4, 24)
    tokens[0, 0].sum().backward()
    touched = feats.grad.abs().sum(dim=(2, 3))
    # frame 0's window (context 1) covers frames 0 and 1 of video 0 only
    assert touched[0, :2].gt(0).all() and touched[0, 2:].eq(0).all() and touched[1].eq(0).all()
    assert all(p.grad is not None for p in proj.parameters())


def test_round_trip_and_determinism(tmp_path):
    a = seeded(lambda: AudioProjection(**AUDIO_PROJ_KWARGS), seed=3)
    b = seeded(lambda: AudioProjection(**AUDIO_PROJ_KWARGS), seed=3)
    assert_same_state(a, b)
    a.save_pretrained(tmp_path / "ap")
    loaded = AudioProjection.from_pretrained(tmp_path / "ap")
    assert public_config(loaded) == public_config(a) and public_config(a) == {**AUDIO_PROJ_KWARGS}
    x = randn(1, 3, 3, 8)
    assert torch.equal(a(x), loaded(x))


def test_shape_error():
    proj = AudioProjection(**AUDIO_PROJ_KWARGS)
    with pytest.raises(ValueError, match=r"\(B, F, 3, 8\)"):
        proj(randn(1, 3, 4, 8))
