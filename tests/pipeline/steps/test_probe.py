from pathlib import Path

import pytest

from pipeline.cache import Cache
from pipeline.steps.probe import Probe
from tests.pipeline.helpers import run_steps, source


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


def probe(path: Path, cache: Cache):
    kept, drops = run_steps([source(path, cache)], [Probe()], cache)
    return (kept[0].meta["probe"] if kept else None), (drops[0][1] if drops else None)


def test_probe_reads_rates_formats_and_extent(media, cache):
    meta, drop = probe(media("a.mp4", seconds=3.0, fps="30000/1001", sample_rate=48000), cache)
    assert drop is None
    assert meta["avg_fps"] == pytest.approx(29.97, abs=0.01)
    assert meta["audio_sample_rate"] == 48000 and meta["audio_channels"] == 2
    assert meta["video_end"] - meta["video_start"] == pytest.approx(3.0, abs=0.05)
    assert meta["width"] == 96 and not meta["vfr"]


def test_probe_flags_variable_frame_rate(media, cache):
    meta, _ = probe(media("vfr.mp4", seconds=3.0, fps="25", vfr=True), cache)
    assert meta["vfr"]


@pytest.mark.parametrize(
    "kind,reason",
    [("no_audio", "no_audio"), ("no_video", "no_video"), ("garbage", "unreadable"), ("truncated", "unreadable")],
)
def test_probe_drop_reasons(media, cache, tmp_path, kind, reason):
    if kind == "no_audio":
        path = media("x.mp4", audio=False)
    elif kind == "no_video":
        path = media("x.m4a", video=False)
    elif kind == "garbage":
        path = tmp_path / "x.mp4"
        path.write_bytes(b"not a video at all" * 100)
    else:  # moov atom at the end, file cut in half: nothing to read
        full = media("full.mp4", seconds=4.0)
        path = tmp_path / "x.mp4"
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    meta, drop = probe(path, cache)
    assert meta is None and drop.reason == reason and drop.message
