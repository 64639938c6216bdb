"""Voice VA judge: the published head layout, outputs, frozen weights, gradients to the input, folder errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from core.weights import WeightsError
from judges import voice_va
from judges.voice_va import SAMPLE_RATE as SR


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(voice_va.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return voice_va.load(folder, "cpu")


def _windows(n: int, seconds: float = 1.0, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return [(0.3 * np.sin(2 * np.pi * (110 + 50 * i) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32) for i in range(n)]


def test_va_head_loads_a_state_dict_in_the_published_key_layout(folder, tmp_path):
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "arousal", "1": "dominance", "2": "valence"}
    model = voice_va.Wav2Vec2ForEmotionRegression(voice_va.Wav2Vec2Config.from_pretrained(folder))
    keys = set(model.state_dict())
    assert {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"} <= keys
    assert all(k.startswith(("wav2vec2.", "classifier.")) for k in keys)
    assert "wav2vec2.feature_extractor.conv_layers.0.conv.weight" in keys and "wav2vec2.encoder.layers.0.attention.k_proj.weight" in keys
    # a checkpoint saved as the published one is (plain state dict in pytorch_model.bin), with values
    # unlike any fresh initialisation: from_pretrained must load every tensor, none missing or unexpected
    gen = torch.Generator().manual_seed(123)
    published = {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ckpt = tmp_path / "published"
    ckpt.mkdir()
    (ckpt / "config.json").write_text((folder / "config.json").read_text())
    torch.save(published, ckpt / "pytorch_model.bin")
    loaded, info = voice_va.Wav2Vec2ForEmotionRegression.from_pretrained(ckpt, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, published[k]), k
    loaded.eval()
    x = torch.randn(2, SR)
    pooled, preds = loaded(x)
    assert pooled.shape == (2, 32) and preds.shape == (2, 3)
    # the head is dropout -> dense -> tanh -> dropout -> out_proj on the time-mean of the last hidden states
    hidden = loaded.wav2vec2(x).last_hidden_state.mean(dim=1)
    head = loaded.classifier
    assert torch.allclose(preds, head.out_proj(torch.tanh(head.dense(hidden))), atol=1e-6)
    # a padded batch pools over each input's own frames
    mask = torch.ones(2, SR, dtype=torch.long)
    mask[1, SR // 2:] = 0
    x[1, SR // 2:] = 0
    _, masked = loaded(x, attention_mask=mask)
    _, alone = loaded(x[1:, : SR // 2])
    assert torch.allclose(masked[1], alone[0], atol=1e-4)


def test_predict_gives_valence_arousal_dominance_in_dims_order(judge):
    assert judge.order == [2, 0, 1]  # published id2label: arousal, dominance, valence
    out = judge.predict(_windows(3))
    assert isinstance(out, voice_va.VoiceVA)
    assert out.values.shape == (3, 3) and out.values.dtype == torch.float32
    assert out.pooled.shape == (3, 32) and out.pooled.dtype == torch.float32
    assert torch.isfinite(out.values).all() and not out.values.requires_grad
    _, raw = judge.model(torch.from_numpy(judge.feature_extractor(_windows(3), sampling_rate=SR, return_tensors="np").input_values))
    assert torch.equal(out.values, raw[:, [2, 0, 1]])
    assert torch.equal(out.valence, out.values[:, 0]) and torch.equal(out.arousal, out.values[:, 1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.values = out.values  # type: ignore[misc]


def test_judge_is_frozen_and_gradients_reach_the_waveform(judge):
    assert not judge.model.training
    assert not any(p.requires_grad for p in judge.model.parameters())
    windows = _windows(2)
    x = torch.from_numpy(np.stack(windows)).requires_grad_(True)
    out = judge(x)
    # the differentiable path normalises in torch as the feature extractor does in numpy
    assert torch.allclose(out.values, judge.predict(windows).values, atol=1e-4)
    (out.values[:, :2] ** 2).sum().backward()  # an eq. 3 style loss on valence and arousal
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())


def test_padded_forward_matches_each_input_alone(judge):
    a, b = _windows(2, seed=1)
    x = torch.from_numpy(np.stack([a, b]))
    mask = torch.ones_like(x, dtype=torch.long)
    mask[1, SR // 2:] = 0
    padded = judge.forward(x, attention_mask=mask).values
    alone = judge.forward(x[1:, : SR // 2]).values
    assert torch.allclose(padded[1], alone[0], atol=1e-4)


def test_missing_or_incomplete_folder_names_the_missing_file(folder, without, tmp_path):
    with pytest.raises(WeightsError, match="pytorch_model.bin"):
        voice_va.load(without(folder, "pytorch_model.bin"), "cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        voice_va.load(tmp_path / "nowhere", "cpu")


def test_a_folder_whose_labels_are_not_va_is_refused(folder, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    config = json.loads((other / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="id2label"):
        voice_va.load(other, "cpu")


def test_spec_is_the_published_model():
    spec = voice_va.SPEC
    assert spec.repo_id == "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim" and spec.licence == "CC-BY-NC-SA-4.0"
    assert spec.files == ("config.json", "preprocessor_config.json", "pytorch_model.bin") and spec.make_tiny is voice_va.make_tiny_va
