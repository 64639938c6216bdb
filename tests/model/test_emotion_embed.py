"""EmotionEmbedding: eq. 1 concatenation, tokens, classifier-free-guidance null embedding."""

from __future__ import annotations

import pytest
import torch

from model.emotion_embed import EmotionEmbedding, cfg_drop_mask, fit_segments

from .tiny import EMOTION_KWARGS, assert_same_state, public_config, randn, seeded


def _inputs(batch=3):
    return randn(batch, 7, seed=1), randn(batch, 4, seed=2), randn(batch, 4, 2, seed=3)


def test_eq1_concatenation_order():
    emb = EmotionEmbedding(**EMOTION_KWARGS)
    e_t = torch.tensor([[1.0, 2, 3, 4, 5, 6, 7]])
    e_ser = torch.tensor([[10.0, 11, 12, 13]])
    e_va = torch.tensor([[[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]])
    e = emb.concat(e_t, e_ser, e_va)
    expected = [1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    torch.testing.assert_close(e, torch.tensor([expected]))


def test_tokens_shape_and_backward():
    emb = seeded(lambda: EmotionEmbedding(**EMOTION_KWARGS))
    tokens = emb(*_inputs())
    assert tokens.shape == (3, 3, 32)
    tokens.sum().backward()
    assert all(p.grad is not None for n, p in emb.named_parameters() if n != "null_embedding")
    assert emb.null_embedding.grad is None  # not used without dropout


def test_cfg_dropout_replaces_with_the_null_embedding():
    emb = seeded(lambda: EmotionEmbedding(**EMOTION_KWARGS))
    inputs = _inputs()
    kept = emb(*inputs)
    mask = torch.tensor([False, True, False])
    dropped = emb(*inputs, drop_mask=mask)
    assert torch.equal(dropped[0], kept[0]) and torch.equal(dropped[2], kept[2])
    assert torch.equal(dropped[1], emb.null_embedding)
    assert torch.equal(emb.null_tokens(2), emb.null_embedding[None].expand(2, -1, -1))
    dropped.sum().backward()
    assert emb.null_embedding.grad is not None and emb.null_embedding.grad.abs().sum() > 0  # it is learned
    # the null embedding does not depend on the inputs
    other = emb(*_inputs(), drop_mask=torch.ones(3, dtype=torch.bool))
    assert torch.equal(other, emb.null_tokens(3))


def test_cfg_drop_mask():
    assert not cfg_drop_mask(100, 0.0, torch.Generator().manual_seed(0)).any()
    assert cfg_drop_mask(100, 1.0, torch.Generator().manual_seed(0)).all()
    a = cfg_drop_mask(1000, 0.1, torch.Generator().manual_seed(5))
    b = cfg_drop_mask(1000, 0.1, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and 50 < a.sum() < 150
    with pytest.raises(ValueError):
        cfg_drop_mask(3, 1.5)


def test_fit_segments():
    va = torch.tensor([[[0.0, 1.0], [1.0, 3.0]]])  # K = 2
    up = fit_segments(va, 3)
    torch.testing.assert_close(up, torch.tensor([[[0.0, 1.0], [0.5, 2.0], [1.0, 3.0]]]))
    assert fit_segments(up, 3) is up


def test_round_trip(tmp_path):
    emb = seeded(lambda: EmotionEmbedding(**EMOTION_KWARGS), seed=4)
    emb.save_pretrained(tmp_path / "emo")
    loaded = EmotionEmbedding.from_pretrained(tmp_path / "emo")
    assert public_config(loaded) == EMOTION_KWARGS
    assert_same_state(emb, loaded)
    mask = torch.tensor([True, False, False])
    assert torch.equal(emb(*_inputs(), drop_mask=mask), loaded(*_inputs(), drop_mask=mask))


def test_shape_errors():
    emb = EmotionEmbedding(**EMOTION_KWARGS)
    t, s, va = _inputs()
    with pytest.raises(ValueError, match="valence_arousal"):
        emb(t, s, va[:, :3])
    with pytest.raises(ValueError, match="drop_mask"):
        emb(t, s, va, drop_mask=torch.ones(2, dtype=torch.bool))
