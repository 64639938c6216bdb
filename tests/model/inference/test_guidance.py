"""Classifier-free guidance: the branches each configuration runs and how their predictions combine."""

from __future__ import annotations

import pytest
import torch

from core.params import ParamsError, from_dict
from model.inference.guidance import branch_masks, combine
from model.inference.params import GuidanceParams, InferenceParams


def test_default_is_two_branches_keeping_the_reference():
    g = GuidanceParams()
    assert g.branches() == [(), ("caption", "audio", "emotion")]
    masks = branch_masks(g, 2)
    assert masks["audio"].tolist() == [False, False, True, True] and not masks["reference"].any()


def test_two_branch_combination_is_the_cfg_formula():
    g = GuidanceParams(scale=3.0)
    cond, uncond = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    assert torch.allclose(combine(torch.cat([cond, uncond]), g), uncond + 3.0 * (cond - uncond))


def test_scale_one_or_nothing_dropped_runs_one_branch():
    assert GuidanceParams(scale=1.0).branches() == [()]
    assert GuidanceParams(unconditional=[]).branches() == [()]
    x = torch.randn(1, 2)
    assert torch.equal(combine(x, GuidanceParams(scale=1.0)), x)


def test_multi_condition_form():
    g = GuidanceParams(per_condition={"audio": 4.0, "emotion": 2.0})
    assert g.branches() == [(), ("audio",), ("emotion",)]
    full, no_audio, no_emotion = torch.randn(3, 1, 5).unbind(0)
    expected = full + 3.0 * (full - no_audio) + 1.0 * (full - no_emotion)
    assert torch.allclose(combine(torch.stack([full, no_audio, no_emotion]), g), expected)
    # with one condition it is the two-branch form
    one = GuidanceParams(per_condition={"audio": 2.5})
    assert torch.allclose(combine(torch.stack([full, no_audio]), one), no_audio + 2.5 * (full - no_audio))


def test_params_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown condition 'mouth'"):
        GuidanceParams(unconditional=["mouth"])
    with pytest.raises(ParamsError, match="steps"):
        from_dict(InferenceParams, {"steps": 0}, "params.yaml: inference")
    with pytest.raises(ParamsError, match="unknown key 'step'"):
        from_dict(InferenceParams, {"step": 40}, "params.yaml: inference")
