"""Generation on a tiny trained model: length, determinism, chaining of windows, the reference features,
``save_pretrained`` / ``from_pretrained``, and the windows cut as the training loader cuts them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import DataParams
from model.data.clips import iter_clips
from model.inference.checkpoints import CheckpointsMissing, from_checkpoints
from model.inference.params import InferenceParams
from model.inference.pipeline import TalkingFacePipeline, _with_motion


@pytest.fixture(scope="module")
def loaded(trained):
    return from_checkpoints(trained / "checkpoints")


@pytest.fixture(scope="module")
def clip(trained, loaded):
    return next(iter_clips(loaded.data, "test", trained / "shards"))


class _Short:
    def __init__(self, clip, frames):
        self.clip, self.frames, self.key = clip, frames, clip.key

    def window(self, start, count=None):
        return self.clip.window(start, count)


def _reference(clip, size):
    return torch.from_numpy(clip.decode_frames(size, 1)[0]).permute(2, 0, 1).contiguous()


def test_checkpoints_give_every_component_and_the_run_data(loaded, trained):
    pipe = loaded.pipeline
    assert loaded.tiny and loaded.data.target_frames == 4 and loaded.data.size == 32
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.scheduler.config.prediction_type == "epsilon"
    assert pipe.a2m is not None and pipe.image_proj is not None and pipe.motion_frames == 2
    assert loaded.sources["unet"].endswith("stage2/step-2/unet") and loaded.sources["reference_net"].endswith("stage1/step-2/reference_net")
    assert not any(p.requires_grad for p in pipe.unet.parameters())


def test_missing_stage_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointsMissing, match=r"stage2.*dvc repro train@stage2"):
        from_checkpoints(tmp_path)


def test_length_determinism_and_chaining(loaded, clip):
    """11 frames with 4-frame windows: 3 windows, 11 frames out; the same seed gives the same video."""
    pipe, data = loaded.pipeline, loaded.data
    ref = _reference(clip, data.size)
    params = InferenceParams(steps=2)
    a = pipe(_Short(clip, 11), ref, params, frames_per_clip=4, progress=False)
    b = pipe(_Short(clip, 11), ref, params, frames_per_clip=4, progress=False)
    assert a.frames.shape == (11, 32, 32, 3) and a.frames.dtype == np.uint8 and a.windows == 3
    assert a.latents.shape[2] == 11 and a.first_motion == "a2m"
    assert np.array_equal(a.frames, b.frames)
    c = pipe(_Short(clip, 11), ref, params, frames_per_clip=4, seed=1, progress=False)
    assert not np.array_equal(a.frames, c.frames)
    d = pipe(_Short(clip, 11), ref, InferenceParams(steps=2, first_motion="reference"), frames_per_clip=4, progress=False)
    assert d.first_motion == "reference" and not torch.equal(a.latents[:, :, :4], d.latents[:, :, :4])
    # windows are chained: the first window does not depend on what follows it
    first = pipe(_Short(clip, 4), ref, params, frames_per_clip=4, progress=False)
    assert torch.allclose(first.latents, a.latents[:, :, :4], atol=1e-5)


def test_motion_features_equal_one_reference_net_call(loaded, clip):
    """Reference features computed once + motion-frame features per window == the ReferenceNet on 1 + M images."""
    net = loaded.pipeline.reference_net
    g = torch.Generator().manual_seed(0)
    ref, motion, text = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 2, 16, 16, generator=g), torch.randn(2, 77, 32, generator=g)
    joint = net(ref, text, motion_latents=motion).features
    split = _with_motion(net, net(ref, text).features, motion, text)
    for name in joint:
        assert torch.allclose(joint[name], split[name], atol=1e-5), name


def test_window_past_the_end_repeats_the_last_rows(clip):
    n, t, c = clip.frames, 4, clip.params.audio_context
    window = clip.window(n - 2, t)
    assert window["audio_embed"].shape[0] == t + 2 * c
    last = clip.window(n - 1, 1)["audio_embed"][c]
    assert torch.equal(window["audio_embed"][-1], last) and torch.equal(window["audio_embed"][c + 1], last)
    assert window["valence_arousal"].shape[0] == t and {"text_states", "reference_image_embed"} <= set(window)


def test_save_and_from_pretrained_round_trip(loaded, clip, tmp_path):
    pipe = loaded.pipeline
    pipe.save_pretrained(tmp_path / "pipe")
    again = TalkingFacePipeline.from_pretrained(tmp_path / "pipe", local_files_only=True)
    ref = _reference(clip, loaded.data.size)
    a = pipe(_Short(clip, 5), ref, InferenceParams(steps=2), frames_per_clip=4, progress=False)
    b = again(_Short(clip, 5), ref, InferenceParams(steps=2), frames_per_clip=4, progress=False)
    assert np.array_equal(a.frames, b.frames)


def test_data_params_come_from_the_stage2_run(loaded):
    assert isinstance(loaded.data, DataParams) and loaded.data.motion_frames == 2
