"""train.common + train.<stage> resolution, train.tiny, and the start-of-run size checks naming both keys."""

from __future__ import annotations

import pytest
import torch
import yaml

from core.params import ParamsError, load
from model.builder import ModelParams
from model.data import DataParams
from model.training import guards
from model.training.params import resolve

from .conftest import DATA, MODEL


def _write(tmp_path, train, profile="tiny", **sections):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"weights": {"profile": profile}, "data": DATA, "model": MODEL, "train": train, **sections}))
    return path


def test_stage_overrides_common_and_aux_merges_key_by_key(tmp_path):
    path = _write(tmp_path, {"common": {"lr": 1e-4, "aux": {"sync": 0.5, "frames": 6}}, "stage2": {"lr": 2e-5, "aux": {"emo": 0.1}}})
    t = resolve("stage2", path).train
    assert (t.lr, t.aux.sync, t.aux.emo, t.aux.frames) == (2e-5, 0.5, 0.1, 6)
    assert resolve("stage1", path).train.lr == 1e-4


@pytest.mark.parametrize("train, key", [({"common": {"lrr": 1}}, "train.common: unknown key 'lrr'"),
                                        ({"stage1": {"stepz": 1}}, "train.stage1: unknown key 'stepz'"),
                                        ({"stage3": {}}, "train: unknown key 'stage3'"),
                                        ({"common": {"mixed_precision": "fp8"}}, "train.common.mixed_precision")])
def test_typos_name_the_key(tmp_path, train, key):
    with pytest.raises(ParamsError, match=key):
        resolve("stage1", _write(tmp_path, train))


def test_zero_terminal_snr_needs_v_prediction(tmp_path):
    with pytest.raises(ParamsError, match="v_prediction"):
        resolve("stage1", _write(tmp_path, {"common": {"zero_terminal_snr": True}}))


def test_tiny_overrides_apply_only_to_the_tiny_profile(tmp_path):
    train = {"tiny": {"data.size": 64, "model.audio_proj.hidden_dim": 16, "train.stage1.steps": 3}, "common": {}}
    tiny = resolve("stage1", _write(tmp_path, train))
    assert tiny.train.steps == 3 and tiny.raw["data"]["size"] == 64 and tiny.raw["model"]["audio_proj"]["hidden_dim"] == 16
    paper = resolve("stage1", _write(tmp_path, train, profile="paper"))
    assert paper.train.steps == 30000 and paper.raw["data"]["size"] == DATA["size"] and paper.tiny_overrides == {}
    with pytest.raises(ParamsError, match="must start with data., model. or train."):
        resolve("stage1", _write(tmp_path, {"tiny": {"weights.profile": "paper"}}))


def test_model_and_data_disagreements_name_both_keys(tmp_path):
    res = resolve("stage2", _write(tmp_path, {"stage2": {"init_from": "x"}}))
    model = load(ModelParams, "model", data=res.raw)
    with pytest.raises(ParamsError, match=r"model.audio_proj.context_frames \(2\) must equal data.audio_context \(3\)"):
        guards.check_params(res, model, DataParams(**{**DATA, "audio_context": 3}))
    res = resolve("stage2", _write(tmp_path, {"stage2": {"init_from": "x", "motion_source": "mix", "a2m_from": "y"}}))
    with pytest.raises(ParamsError, match=r"data.motion_frames \(3\) must be <= data.audio_context \(2\)"):
        guards.check_params(res, load(ModelParams, "model", data={"model": {**MODEL, "a2m": {**MODEL["a2m"], "motion_frames": 3}}}),
                            DataParams(**{**DATA, "motion_frames": 3}))
    res = resolve("stage1", _write(tmp_path, {"stage1": {"motion_source": "a2m"}}))
    with pytest.raises(ParamsError, match="train.stage1.motion_source"):
        guards.check_params(res, model, DataParams(**DATA))


def test_sidecar_sizes_are_checked_against_the_model_keys(tmp_path):
    res = resolve("stage2", _write(tmp_path, {"tiny": {"model.audio_proj.hidden_dim": 32}}))
    model = load(ModelParams, "model", data=res.raw)
    batch = {"audio_embed": torch.zeros(1, 8, 3, 8), "text_emotion": torch.zeros(1, 7), "speech_emotion": torch.zeros(1, 4),
             "valence_arousal": torch.zeros(1, 4, 2), "text_states": torch.zeros(1, 77, 32), "reference_image_embed": torch.zeros(1, 16)}
    guards.check_batch(res, batch, model, 32)
    with pytest.raises(ParamsError, match=r"model.image_proj.enabled needs .*add clip_image to data.stage2_features"):
        guards.check_batch(res, {k: v for k, v in batch.items() if k != "reference_image_embed"}, model, 32)
    with pytest.raises(ParamsError, match=r"model.image_proj.in_dim \(16\).*embedding size of the clip_image sidecar \(768,"):
        guards.check_batch(res, {**batch, "reference_image_embed": torch.zeros(1, 768)}, model, 32)
    with pytest.raises(ParamsError, match=r"model.audio_proj.num_layers \(3\).*the wav2vec2 layers of the audio_embed sidecar \(13,"):
        guards.check_batch(res, {**batch, "audio_embed": torch.zeros(1, 8, 13, 8)}, model, 32)
    with pytest.raises(ParamsError, match=r"model.emotion_embed.ser_dim \(4\).*class count of the emotion_speech sidecar \(6,"):
        guards.check_batch(res, {**batch, "speech_emotion": torch.zeros(1, 6)}, model, 32)
    with pytest.raises(ParamsError, match=r"cross_attention_dim \(32\).*text-state width of the caption sidecar \(768,"):
        guards.check_batch(res, {**batch, "text_states": torch.zeros(1, 77, 768)}, model, 32)
