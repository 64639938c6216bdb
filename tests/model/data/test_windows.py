"""Frame choices: window edges, keyframe references, member rows."""

from __future__ import annotations

import numpy as np
import pytest

from core.shards import Member
from model.data import DataParams, stage1_indices, stage2_indices
from model.data.windows import audio_rows, member_rows

from .toy import SIDE


def test_window_indices_at_clip_edges():
    p = DataParams(size=SIDE)
    rng = np.random.default_rng(0)
    starts = {int(stage2_indices(20, p, rng)["frame_index"][0]) for _ in range(300)}
    assert starts == set(range(2, 7))  # [M, F - T]
    with pytest.raises(ValueError, match="shorter than the 14-frame window"):
        stage2_indices(13, p, rng)


def test_keyframe_reference_is_uniform_over_keyframes():
    keyframes = np.array([0, 25, 50, 69, 94])
    p = DataParams(size=SIDE, stage2_reference="keyframe")
    rng = np.random.default_rng(1)
    refs = [int(stage2_indices(100, p, rng, keyframes)["reference_index"]) for _ in range(2000)]
    counts = np.array([refs.count(k) for k in keyframes])
    assert set(refs) == set(keyframes.tolist()) and counts.min() > 0.8 * 400 and counts.max() < 1.2 * 400
    refs_any = {int(stage2_indices(100, DataParams(size=SIDE, stage2_reference="any"), rng, keyframes)["reference_index"]) for _ in range(2000)}
    assert len(refs_any) == 100


def test_member_rows_follow_the_declared_window():
    p = DataParams(size=SIDE)
    idx = stage2_indices(20, p, np.random.default_rng(0))
    frames = lambda w: Member("x.npy", "float32", ("frames", 2), window=w)
    assert member_rows(frames("frames"), idx, 20, p) is idx["frame_index"]
    assert member_rows(frames("mean"), idx, 20, p) is idx["frame_index"]
    assert member_rows(frames("audio"), idx, 20, p) is idx["audio_index"]
    assert member_rows(Member("y.npy", "float32", (77, 8)), idx, 20, p) is None
    # stage 1 has no audio window of its own: the target frame widened by the audio context
    one = stage1_indices(20, p, np.random.default_rng(0))
    t = int(one["frame_index"][0])
    assert member_rows(frames("audio"), one, 20, p).tolist() == np.clip(np.arange(t - 2, t + 3), 0, 19).tolist()
    assert audio_rows(np.arange(0, 14), 14, 2).tolist() == [0, 0] + list(range(14)) + [13, 13]
