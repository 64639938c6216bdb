"""DataParams: defaults, checks, and the repository's ``data`` section."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.params import ParamsError, load
from model.data import DataParams, load_params

REPO = Path(__file__).resolve().parents[3]


def test_defaults_and_the_repository_section():
    p = DataParams()
    assert p.stage1_features == ["caption"]
    assert p.stage2_features == ["audio_embed", "emotion_text", "emotion_speech", "valence_arousal", "caption"]
    assert (p.target_frames, p.motion_frames, p.audio_context) == (14, 2, 2)
    assert isinstance(load_params(REPO / "params.yaml"), DataParams)
    assert p.features("stage1") == ["caption"] and p.features("stage2") == p.stage2_features


def test_checks():
    with pytest.raises(ValueError, match="pixels must be"):
        DataParams(pixels="float16")
    with pytest.raises(ValueError, match="stage2_reference"):
        DataParams(stage2_reference="nearest")
    with pytest.raises(ValueError, match="listed twice"):
        DataParams(stage2_features=["caption", "caption"])
    with pytest.raises(ValueError, match="not a plain name"):
        DataParams(stage2_features=["../caption"])
    with pytest.raises(ParamsError, match="unknown key 'stage2_feature'"):
        load(DataParams, "data", data={"data": {"stage2_feature": ["caption"]}})
    with pytest.raises(ValueError, match="stage must be"):
        DataParams().features("stage3")
