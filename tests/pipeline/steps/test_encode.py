import subprocess

import numpy as np
import pytest
import soundfile as sf

from pipeline.cache import Cache
from core.media import ffprobe, packet_times
from pipeline.steps.audio import DecodeAudio
from pipeline.steps.encode import Encode
from pipeline.steps.probe import Probe
from pipeline.steps.segment import Segment
from tests.pipeline.helpers import run_steps, source

INGEST = [Probe(), DecodeAudio(), Segment(), Encode()]


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


def check_clip(clip):
    """25 fps CFR video and 16 kHz mono audio of exactly the same duration; the mp4 carries the sound as AAC."""
    v = ffprobe(clip.files["mp4"])["streams"]
    assert len(v) == 2 and v[0]["codec_name"] == "h264" and v[0]["avg_frame_rate"] == "25/1"
    assert v[1]["codec_name"] == "aac" and int(v[1]["sample_rate"]) == 16000 and int(v[1]["channels"]) == 1
    frames = int(v[0]["nb_frames"])
    pts = packet_times(clip.files["mp4"], "v:0")[:, 0]
    assert np.allclose(np.diff(pts), 0.04, atol=1e-3)  # constant frame rate
    info = sf.info(clip.files["wav"])
    assert (info.samplerate, info.channels) == (16000, 1)
    assert info.frames == frames * 640  # identical durations
    assert frames == clip.meta["encode"]["frames"] and clip.duration == pytest.approx(frames / 25)
    assert float(v[1]["duration"]) == pytest.approx(frames / 25, abs=0.07)  # the AAC track lasts the whole clip
    assert (int(v[0]["width"]), int(v[0]["height"])) == (clip.meta["encode"]["width"], clip.meta["encode"]["height"])
    return frames


@pytest.mark.parametrize("fps", ["24", "30000/1001", "30", "50"])
def test_frame_rates_become_25_fps(media, cache, fps):
    (clip,), _ = run_steps([source(media("a.mp4", seconds=4.0, fps=fps), cache)], INGEST, cache)
    assert check_clip(clip) == 100


def test_vfr_and_offset_sources(media, cache):
    srcs = [source(media("vfr.mp4", seconds=4.0, vfr=True), cache),
            source(media("off.mp4", seconds=4.0, audio_offset=0.5, audio_seconds=3.5), cache)]
    clips, drops = run_steps(srcs, INGEST, cache)
    assert not drops
    vfr, off = clips
    assert check_clip(vfr) == 100
    am = off.meta["audio"]
    # 3.5 s of overlap (less the AAC encoder delay, ~23 ms), in whole frames
    assert check_clip(off) == int((am["span_end_s"] - am["span_start_s"]) * 25) in (87, 88)
    assert off.start == pytest.approx(0.5, abs=0.03)


def test_audio_follows_the_video_timeline(media, cache):
    """The wav of a clip cut at t holds the source audio from t: tone gates line up with the cut."""
    clips, _ = run_steps([source(media("long.mp4", seconds=25.0, size="32x32"), cache)], INGEST, cache)
    second = clips[1]
    x, sr = sf.read(second.files["wav"])
    env = np.abs(x).reshape(-1, 160).max(axis=1)  # 10 ms envelope
    t = np.arange(env.size) / 100 + second.start
    on = (t % 2.0) > 0.55
    off = ((t % 2.0) > 0.05) & ((t % 2.0) < 0.45)
    assert env[on].mean() > 10 * env[off].mean()


def test_mp4_decodes_from_a_pipe(media, cache):
    (clip,), _ = run_steps([source(media("a.mp4", seconds=3.5), cache)], INGEST, cache)
    data = open(clip.files["mp4"], "rb").read()
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "null", "-"], input=data, capture_output=True)
    assert out.returncode == 0, out.stderr
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart


@pytest.mark.real
def test_real_v04_30fps_with_audio_video_mismatch(real_dir, cache):
    path = real_dir / "videos" / "v04_frontal_woman_30fps_a44k.mp4"
    (clip,), _ = run_steps([source(path, cache)], INGEST, cache)
    frames = check_clip(clip)
    assert frames == 164  # the shorter (audio) extent, in whole 25 fps frames: 6.56 s


@pytest.mark.real
def test_real_v05_hevc_portrait_is_cut_to_at_most_20s(real_dir, cache):
    from pipeline.steps.encode import EncodeParams

    path = real_dir / "videos" / "v05_hevc_portrait1080x1920_30fps_a44k.mp4"
    clips, drops = run_steps([source(path, cache)], [Probe(), DecodeAudio(), Segment(), Encode(EncodeParams(max_side=256, preset="ultrafast"))], cache)
    assert not drops and clips
    assert all(c.duration <= 20.0 for c in clips)
    assert sum(check_clip(c) for c in clips) == 500
    assert clips[0].meta["encode"]["height"] == 256 and clips[0].meta["encode"]["width"] == 144
