"""The one builder: ModelParams from params.yaml, components from an SD 1.5 folder or at paper scale."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.params import ParamsError, load
from model.builder import (
    Components,
    ModelParams,
    build_components,
    check_data,
    load_params,
)
from model.data import DataParams

from .tiny import (
    AUDIO_PROJ_KWARGS,
    EMOTION_KWARGS,
    UNET_KWARGS,
    assert_same_state,
    public_config,
    tiny_model_params,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_repository_model_section_is_the_paper_scale_default():
    p = load(ModelParams, "model", REPO / "params.yaml")
    assert p == ModelParams() == load_params(REPO / "params.yaml")
    check_data(p, load(DataParams, "data", REPO / "params.yaml"))
    assert p.a2m.kwargs()["flow_num_flows"] == 4 and "flow" not in p.a2m.kwargs()


def test_a_typo_or_a_mismatch_is_an_error_naming_the_key():
    with pytest.raises(ParamsError, match=r"model.a2m.flow: unknown key 'num_flow'"):
        load(ModelParams, "model", data={"model": {"a2m": {"flow": {"num_flow": 2}}}})
    with pytest.raises(ParamsError, match=r"model: unknown key 'audio_projection'"):
        load(ModelParams, "model", data={"model": {"audio_projection": {}}})
    with pytest.raises(ParamsError, match=r"model.unet.audio_dim \(512\) must equal model.audio_proj.output_dim \(768\)"):
        load(ModelParams, "model", data={"model": {"unet": {"audio_dim": 512}}})
    with pytest.raises(ValueError, match=r"model.audio_proj.context_frames \(2\) must equal data.audio_context \(3\)"):
        check_data(ModelParams(), DataParams(audio_context=3))


def test_paper_scale_on_meta_and_the_sd15_folder(sd15_dir):
    meta = build_components(None, ModelParams(), "meta")
    assert isinstance(meta, Components) and meta.tokenizer is None
    assert all(p.is_meta for m in meta.modules().values() for p in m.parameters())
    assert meta.unet.unet.config.cross_attention_dim == 768 and meta.audio_proj.config.num_tokens == 32
    with pytest.raises(ValueError, match="meta device"):
        build_components(sd15_dir, tiny_model_params(), "meta")

    a = build_components(sd15_dir, tiny_model_params(), "cpu", seed=0)
    b = build_components(sd15_dir, tiny_model_params(), "cpu", seed=0)
    for name, module in a.modules().items():
        assert_same_state(module, b.modules()[name])  # a seed gives the same new modules
    assert {k: v for k, v in public_config(a.unet).items() if k != "backbone"} == UNET_KWARGS
    assert public_config(a.audio_proj) == AUDIO_PROJ_KWARGS and public_config(a.emotion_embed) == EMOTION_KWARGS
    # the backbones are the folder's UNet weights
    from diffusers import UNet2DConditionModel

    base = UNet2DConditionModel.from_pretrained(str(sd15_dir / "unet")).state_dict()
    for net in (a.unet, a.reference_net):
        own = net.unet.state_dict()
        assert all(torch.equal(own[k], v) for k, v in base.items())
    assert a.tokenizer is not None and not any(p.is_meta for p in a.vae.parameters())
