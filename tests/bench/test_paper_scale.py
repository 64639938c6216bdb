"""bench.paper_scale: paper-scale parameter counts on the meta device (model.builder), activation accounting."""

from __future__ import annotations

import pytest

from bench.paper_scale import (
    PaperSetting,
    activation_bytes,
    build_components,
    parameter_counts,
    training_memory,
)


@pytest.fixture(scope="module")
def counts():
    return parameter_counts(build_components("meta"))


def test_paper_scale_parameter_counts(counts):
    # the published sizes of the SD 1.5 parts
    assert counts["denoising_unet.sd_base"] == 859_520_964
    assert counts["reference_net"] == 859_520_964
    assert counts["vae"] == 83_653_863
    assert counts["text_encoder"] == 123_060_480
    added = sum(counts[f"denoising_unet.{k}"] for k in ("temporal", "audio", "emotion"))
    assert counts["denoising_unet"] == 859_520_964 + added
    # audio and emotion attentions have the same shapes (768-d tokens) in every block
    assert counts["denoising_unet.audio"] == counts["denoising_unet.emotion"]
    assert counts["image_proj"] == 2 * 768 + 768 * 768 + 768  # LayerNorm + the zero-initialised Linear (figure 2a's CLIP path)
    assert counts["trainable.stage1"] == 2 * 859_520_964 - counts["reference_net.unused"] + counts["image_proj"]
    assert counts["trainable.stage2"] == added + counts["audio_proj"] + counts["emotion_embed"]
    assert counts["trainable.a2m"] == counts["a2m"]


def test_activation_accounting_small_setting():
    setting = PaperSetting(batch=1, frames=2, motion_frames=2, resolution=128)
    act = activation_bytes("stage2", setting)
    # SD 1.5 blocks hold 2820 * h^2 channels x tokens per image (h = latent side), bf16
    h = setting.latent
    assert act["reference_features"] == 2820 * h * h * (1 + setting.motion_frames) * setting.batch * 2
    assert 0 < act["checkpointing"] < act["no_checkpointing"]
    assert act["checkpointing"] == act["checkpointing.kept"] + act["checkpointing.largest_block"]


def test_training_memory_fields(counts):
    setting = PaperSetting(batch=1, frames=1, motion_frames=1, resolution=64)
    mem = training_memory("stage1", setting, counts)
    trainable = counts["trainable.stage1"]
    frozen = sum(counts[k] for k in ("denoising_unet", "reference_net", "audio_proj", "emotion_embed", "vae", "text_encoder",
                                     "image_proj")) - trainable
    assert mem["model_states_gib"] == pytest.approx((16 * trainable + 2 * frozen) / 2**30)
    assert mem["total_checkpointing_gib"] < mem["total_no_checkpointing_gib"]


def test_the_components_are_the_builders(counts):
    from model.builder import ModelParams
    from model.builder import build_components as build

    c = build(None, ModelParams(), "meta")
    assert counts["audio_proj"] == sum(p.numel() for p in c.audio_proj.parameters())
    assert counts["a2m"] == sum(p.numel() for p in c.a2m.parameters())
    assert list(build_components("meta")) == ["denoising_unet", "reference_net", "audio_proj", "emotion_embed", "a2m", "vae",
                                              "text_encoder", "image_proj"]
