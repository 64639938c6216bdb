"""bench.ingest_real: the plain-ffmpeg side does the ingest's media work, and the old-vs-new PSNR."""

from __future__ import annotations

import subprocess

import pytest

from bench.common import encode_params
from bench.ingest_real import ffmpeg_cmd, psnr
from core.media import ffprobe


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """1 s of 96x64 30 fps video with 44.1 kHz stereo sound."""
    path = tmp_path_factory.mktemp("real") / "c.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=96x64:r=30:d=1", "-f", "lavfi", "-i",
                    "sine=f=440:r=44100:d=1", "-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    "-shortest", str(path)], check=True)
    return path


def test_plain_ffmpeg_crops_to_the_face_size_at_25_fps_with_16k_audio(clip, tmp_path):
    subprocess.run(ffmpeg_cmd(clip, tmp_path, crop=True), check=True, capture_output=True)
    streams = {s["codec_type"]: s for s in ffprobe(tmp_path / "c.mp4")["streams"]}
    v = streams["video"]
    assert (v["width"], v["height"], v["codec_name"], v["avg_frame_rate"]) == (512, 512, "h264", "25/1")
    assert ("audio" in streams) == bool(encode_params().get("audio_kbps"))  # the clip mp4's AAC track, as the encode step muxes it
    if "audio" in streams:
        assert (int(streams["audio"]["sample_rate"]), streams["audio"]["channels"]) == (16000, 1)
    wav = ffprobe(tmp_path / "c.wav")["streams"][0]
    assert (int(wav["sample_rate"]), wav["channels"], wav["codec_name"]) == (16000, 1, "pcm_s16le")
    (tmp_path / "f").mkdir()
    subprocess.run(ffmpeg_cmd(clip, tmp_path / "f", crop=False), check=True, capture_output=True)
    assert ffprobe(tmp_path / "f" / "c.mp4")["streams"][0]["width"] == 96  # whole frame, under max_side


def test_psnr_of_a_video_with_itself_is_infinite_and_finite_otherwise(clip, tmp_path):
    assert psnr(clip, clip) == float("inf")
    noisy = tmp_path / "n.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-vf", "noise=alls=20:allf=t", "-c:v", "libx264", "-preset", "ultrafast",
                    "-an", str(noisy)], check=True)
    assert 10 < psnr(clip, noisy) < 60
