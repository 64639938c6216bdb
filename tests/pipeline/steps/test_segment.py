import numpy as np
import pytest

from pipeline.cache import Cache
from core.clip import TOO_SHORT
from pipeline.steps.audio import DecodeAudio
from pipeline.steps.probe import Probe
from pipeline.steps.segment import Segment, SegmentParams, plan_cuts
from tests.pipeline.helpers import run_steps, source


@pytest.mark.parametrize("n", [75, 100, 499, 500, 501, 1000, 1234, 2600])
def test_plan_cuts_cover_the_span_within_bounds(n):
    rng = np.random.default_rng(n)
    bounds = plan_cuts(rng.normal(-30, 5, n), 75, 500, 1.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a == b for (_, a), (b, _) in zip(bounds, bounds[1:]))  # contiguous
    assert all(75 <= b - a <= 500 for a, b in bounds)


def test_plan_cuts_prefer_silence():
    db = np.full(700, -20.0)
    db[410:415] = -80.0  # the only pause
    bounds = plan_cuts(db, 75, 500, 1.0)
    assert bounds == [(0, 414), (414, 700)]  # latest frame of the quiet stretch


def test_params_reject_impossible_bounds():
    with pytest.raises(ValueError, match="max_s"):
        SegmentParams(min_s=3.0, max_s=5.0)


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


def test_long_source_is_split_at_silences(media, cache):
    # tone on 1.5 s / off 0.5 s; 25 s must become two clips, the cut inside a pause
    clips, drops = run_steps([source(media("long.mp4", seconds=25.0, size="32x32"), cache)], [Probe(), DecodeAudio(), Segment()], cache)
    assert not drops and len(clips) == 2
    assert all(3.0 <= c.duration <= 20.0 for c in clips)
    assert sum(c.meta["segment"]["frames"] for c in clips) == 625
    cut = clips[1].start
    assert cut % 2.0 < 0.5 + 0.04  # inside an off phase
    assert clips[1].meta["segment"]["cut_at_silence"]
    assert [c.key for c in clips] == sorted(c.key for c in clips)
    assert clips[1].key.endswith(f"__{int(round(cut * 1000)):07d}")


def test_short_source_is_dropped(media, cache):
    clips, drops = run_steps([source(media("s.mp4", seconds=2.0), cache)], [Probe(), DecodeAudio(), Segment()], cache)
    assert not clips and drops[0][0] == "segment" and drops[0][1].reason == TOO_SHORT
