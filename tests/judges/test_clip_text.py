"""CLIP text judge: (N, 77, D) states of the SD 1.5 text encoder, frozen weights, folder errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from core.sd15 import weights_spec
from core.weights import WeightsError
from judges import clip_text


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(clip_text.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return clip_text.load(folder, "cpu")


def test_spec_is_the_sd15_folder():
    assert clip_text.SPEC == weights_spec() and set(clip_text.FILES) <= set(clip_text.SPEC.files)


def test_encode_gives_77_token_states(judge):
    texts = ["a woman with earrings turns her head", "", "x " * 100]
    out = judge.encode(texts)
    assert isinstance(out, clip_text.ClipText)
    assert out.states.shape == (3, 77, 32) and out.states.dtype == torch.float32  # tiny: D = 32
    assert out.input_ids.shape == (3, 77) and out.input_ids.dtype == torch.int64
    assert torch.isfinite(out.states).all()
    # padding: the empty caption is start + end, then padding; the long one is truncated to 77
    assert torch.equal(out.input_ids, judge.tokenize(texts))
    assert torch.equal(judge.encode(texts[:1]).states[0], out.states[0])


def test_judge_is_frozen(judge):
    assert not judge.text_encoder.training and not any(p.requires_grad for p in judge.text_encoder.parameters())
    ids = judge.tokenize(["a man nods"])
    out = judge(ids)  # forward: grad mode on, same numbers as the inference-mode path
    assert torch.equal(out.states, judge.encode(["a man nods"]).states)
    assert not out.states.requires_grad  # frozen weights and discrete tokens: no graph to the weights


def test_missing_files_are_named_and_only_the_text_parts_are_needed(folder, without, tmp_path):
    with pytest.raises(WeightsError, match="tokenizer/merges.txt"):
        clip_text.load(without(folder, "tokenizer/merges.txt"), "cpu")
    text_only = tmp_path / "text-only"
    text_only.mkdir()
    for sub in ("text_encoder", "tokenizer"):
        shutil.copytree(folder / sub, text_only / sub)
    assert clip_text.load(text_only, "cpu").encode(["a"]).states.shape == (1, 77, 32)
