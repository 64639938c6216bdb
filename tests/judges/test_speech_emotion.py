"""Speech emotion judge: probabilities and pooled embedding per window, frozen weights, folder errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.weights import WeightsError
from judges import speech_emotion
from judges.speech_emotion import SAMPLE_RATE as SR


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(speech_emotion.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return speech_emotion.load(folder, "cpu")


def _windows(n: int, seconds: float = 1.0) -> list[np.ndarray]:
    t = np.arange(int(seconds * SR)) / SR
    return [(0.3 * np.sin(2 * np.pi * (150 + 70 * i) * t)).astype(np.float32) for i in range(n)]


def test_predict_gives_probabilities_and_the_classifier_input(judge):
    assert judge.classes == list(speech_emotion.CLASSES)
    out = judge.predict(_windows(3))
    assert isinstance(out, speech_emotion.SpeechEmotion)
    assert out.logits.shape == (3, 4) and out.probs.shape == (3, 4) and out.probs.dtype == torch.float64
    assert torch.allclose(out.probs.sum(dim=1), torch.ones(3, dtype=torch.float64)) and (out.probs >= 0).all()
    assert out.embedding.shape == (3, 16)  # classifier_proj_size of the tiny stand-in
    assert not out.embedding.requires_grad
    # the embedding is what the classifier sees: classifier(embedding) are the logits
    assert torch.allclose(judge.model.classifier(out.embedding), out.logits, atol=1e-6)


def test_judge_is_frozen_and_its_forward_keeps_the_graph(judge):
    assert not judge.model.training and not any(p.requires_grad for p in judge.model.parameters())
    windows = _windows(2)
    x = torch.from_numpy(np.stack(windows)).requires_grad_(True)
    out = judge(x)
    assert torch.allclose(out.probs, judge.predict(windows).probs, atol=1e-5)
    out.probs[:, 1].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())


def test_missing_or_incomplete_folder_names_the_missing_file(folder, without, tmp_path):
    with pytest.raises(WeightsError, match="preprocessor_config.json"):
        speech_emotion.load(without(folder, "preprocessor_config.json"), "cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        speech_emotion.load(tmp_path / "nowhere", "cpu")
