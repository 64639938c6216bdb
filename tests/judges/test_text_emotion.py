"""Text emotion judge: class probabilities per text, truncation, frozen weights, folder errors."""

from __future__ import annotations

import pytest
import torch

from core.weights import WeightsError
from judges import text_emotion


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(text_emotion.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return text_emotion.load(folder, "cpu")


def test_predict_gives_one_probability_row_per_text(judge):
    assert judge.classes == list(text_emotion.CLASSES) and judge.max_tokens == 512
    texts = ["", "I am so happy", "word " * 600]
    out = judge.predict(texts)
    assert isinstance(out, text_emotion.TextEmotion)
    assert out.probs.shape == (3, 7) and out.probs.dtype == torch.float64 and out.logits.shape == (3, 7)
    assert torch.allclose(out.probs.sum(dim=1), torch.ones(3, dtype=torch.float64)) and (out.probs >= 0).all()
    # one text at a time gives the same answer as the padded batch
    assert torch.allclose(judge.predict(texts[1:2]).probs[0], out.probs[1], atol=1e-6)
    assert judge.predict([]).probs.shape == (0, 7)


def test_tokenisation_wraps_and_truncates(judge):
    enc = judge.tokenize(["", "word " * 600], max_tokens=16)
    assert enc["input_ids"].shape == (2, 16)
    assert enc["input_ids"][0, :2].tolist() == [0, 2]  # the empty string is <s></s>
    assert enc["attention_mask"][0].sum() == 2 and enc["attention_mask"][1].sum() == 16


def test_judge_is_frozen_and_gradients_reach_the_input_embeddings(judge):
    assert not judge.model.training and not any(p.requires_grad for p in judge.model.parameters())
    enc = judge.tokenize(["I am so happy"])
    embeds = judge.model.get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)
    out = judge(inputs_embeds=embeds, attention_mask=enc["attention_mask"])
    assert torch.allclose(out.probs, judge.predict(["I am so happy"]).probs, atol=1e-6)
    out.probs[0, 3].backward()
    assert embeds.grad is not None and embeds.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())


def test_missing_or_incomplete_folder_names_the_missing_file(folder, without):
    with pytest.raises(WeightsError, match="merges.txt"):
        text_emotion.load(without(folder, "merges.txt"), "cpu")
