"""Sidecar declarations (members.json) drive the sample entries: no table in the loader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from core.shards import MEMBERS, Member, ShardLayout
from model.data import ClipWindows, DataParams, MissingFeatureError
from model.data.features import cut

from .toy import DATASET, SIDE, add_sidecar, npy

PARAMS = DataParams(size=SIDE, shuffle_buffer=4, samples_per_clip=2, seed=3)


def _copy(project, tmp_path):
    shutil.copytree(project / "shards", tmp_path / "shards")
    return ShardLayout(tmp_path / "shards")


def test_cut_windows_columns_and_dtype():
    a = np.arange(30, dtype=np.float16).reshape(10, 3)
    rows = np.array([2, 3, 4])
    frames = cut(Member("a.npy", "float16", ("frames", 3), sample="a", window="frames", columns=2), a, rows)
    assert frames.dtype == torch.float32 and frames.tolist() == [[6, 7], [9, 10], [12, 13]]
    mean = cut(Member("a.npy", "float16", ("frames", 3), sample="a", window="mean"), a, rows)
    assert mean.tolist() == [9, 10, 11]
    whole = cut(Member("a.npy", "float16", (10, 3), sample="a"), a, None)
    assert whole.shape == (10, 3) and whole.is_contiguous()
    f32 = np.ones((4, 3), np.float32)
    assert np.shares_memory(cut(Member("b.npy", "float32", (4, 3), sample="b"), f32, None).numpy(), f32)  # no copy when float32


def test_a_new_per_frame_feature_needs_only_a_declaration_and_a_params_entry(project, tmp_path):
    layout = _copy(project, tmp_path)
    declared = (Member("x.npy", "float32", ("frames", 4), sample="x_feat", window="frames"),
                Member("unused.npy", "float32", ("frames",)))
    add_sidecar(layout, "x_new", declared, lambda k, i: [("x.npy", npy(np.stack([i, i + 1, i + 2, -i], 1))),
                                                         ("unused.npy", npy(i))])
    p = DataParams(**{**PARAMS.__dict__, "stage2_features": [*PARAMS.stage2_features, "x_new"]})
    samples = list(ClipWindows(p, "stage2", shard_root=layout.root, world_size=1, rank=0))
    assert samples
    for s in samples:
        f = s["frame_index"].numpy()
        assert s["x_feat"].shape == (PARAMS.target_frames, 4) and s["x_feat"].dtype == torch.float32
        assert np.array_equal(s["x_feat"].numpy(), np.stack([f, f + 1, f + 2, -f], 1).astype(np.float32))
        assert "unused" not in s and "x_new" not in s
    # the others are as without it
    base = list(ClipWindows(PARAMS, "stage2", shard_root=layout.root, world_size=1, rank=0))
    for a, b in zip(samples, base):
        assert {k for k in a if k != "x_feat"} == set(b)
        assert all(torch.equal(a[k], b[k]) for k in b if isinstance(b[k], torch.Tensor))


def test_declaration_errors_name_the_key_and_the_fix(project, tmp_path):
    layout = _copy(project, tmp_path)

    def open_with(*features):
        p = DataParams(**{**PARAMS.__dict__, "stage2_features": list(features)})
        return ClipWindows(p, "stage2", shard_root=layout.root, world_size=1, rank=0)

    with pytest.raises(MissingFeatureError, match=r"feature emotions has no sidecar for dataset toy.*"
                                                  r"extract@emotions-toy.*remove emotions from data.stage2_features"):
        open_with("emotions")
    (layout.feature("caption", DATASET) / MEMBERS).unlink()
    with pytest.raises(MissingFeatureError, match=r"feature caption of dataset toy \(data.stage2_features\).*members.json "
                                                  r"not found.*re-run its extract stage"):
        open_with("caption")
    add_sidecar(layout, "speechy", (Member("s.npy", "float32", ("frames",)),), lambda k, i: [("s.npy", npy(i))])
    with pytest.raises(MissingFeatureError, match=r"speechy \(data.stage2_features\) fills no sample entry.*s.npy"):
        open_with("speechy")
    add_sidecar(layout, "twin", (Member("t.npy", "float32", ("frames", 7), sample="text_emotion", window="mean"),),
                lambda k, i: [("t.npy", npy(np.zeros((len(i), 7), np.float32)))])
    with pytest.raises(MissingFeatureError, match="features emotion_text and twin of toy both fill sample entry 'text_emotion'"):
        open_with("emotion_text", "twin")
    add_sidecar(layout, "frames_again", (Member("f.npy", "float32", ("frames",), sample="frames", window="frames"),),
                lambda k, i: [("f.npy", npy(i))])
    with pytest.raises(MissingFeatureError, match="'frames', which the loader fills itself"):
        open_with("frames_again")
    # per-frame members must have the clip's frame count (a sidecar the extract check did not see)
    add_sidecar(layout, "short", (Member("x.npy", "float32", ("frames", 1), sample="x", window="frames"),),
                lambda k, i: [("x.npy", npy(np.zeros((len(i) - 1, 1), np.float32)))], check=False)
    with pytest.raises(MissingFeatureError, match=r"clip toy/toy__c\d__0000000: short x.npy has \d+ rows, the clip \d+ frames"
                                                  r".*extract@short-toy"):
        list(open_with("short"))


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_the_reference_frames_clip_row_is_reference_image_embed(project, stage):
    from .toy import clip_rows

    features = ["clip_image"] if stage == "stage1" else ["audio_embed", "clip_image"]
    p = DataParams(size=SIDE, shuffle_buffer=2, seed=5, **{f"{stage}_features": features})
    samples = list(ClipWindows(p, stage, shard_root=project / "shards", world_size=1, rank=0))
    assert len({int(s["reference_index"]) for s in samples}) > 1
    for s in samples:
        ref, embed = int(s["reference_index"]), s["reference_image_embed"]
        assert embed.shape == (16,) and embed.dtype == torch.float32
        assert torch.equal(embed, torch.from_numpy(clip_rows([ref])[0].astype(np.float32)))
        assert s["clip_image"].shape == (len(s["frame_index"]), 16)  # the window's rows stay the loss target
    off = DataParams(size=SIDE, shuffle_buffer=2, reference_image_embed="", **{f"{stage}_features": features})
    assert all("reference_image_embed" not in s for s in ClipWindows(off, stage, shard_root=project / "shards",
                                                                      world_size=1, rank=0))
