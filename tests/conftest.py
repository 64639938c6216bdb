"""Shared fixtures: offline environment, tiny real media made with ffmpeg, the real clips folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"


def make_media(
    path: Path,
    seconds: float = 4.0,
    fps: str = "25",
    sample_rate: int = 44100,
    channels: int = 2,
    video: bool = True,
    audio: bool = True,
    size: str = "96x96",
    audio_offset: float = 0.0,
    audio_seconds: float | None = None,
    gated: bool = True,
    vfr: bool = False,
) -> Path:
    """A small real media file: test pattern video and a 220 Hz tone, on 1.5 s / off 0.5 s when ``gated``.

    ``audio_offset`` delays the audio stream (container start offset); ``audio_seconds`` makes the
    audio shorter or longer than the video; ``vfr`` jitters the frame timestamps.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y"]
    maps = []
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
        maps += ["-map", "0:v"]
    if audio:
        expr = "0.3*sin(2*PI*220*t)" + ("*gt(mod(t\\,2)\\,0.5)" if gated else "")
        if audio_offset:
            cmd += ["-itsoffset", str(audio_offset)]
        cmd += ["-f", "lavfi", "-i", f"aevalsrc={expr}:s={sample_rate}:c={'stereo' if channels == 2 else 'mono'}:d={audio_seconds or seconds}"]
        maps += ["-map", f"{1 if video else 0}:a"]
    cmd += maps
    if video:
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "1"]
        if vfr:
            # frame intervals alternate 50 ms / 30 ms around the nominal 40 ms
            cmd += ["-vf", "settb=1/1000,setpts=N/FRAME_RATE/TB+mod(N\\,2)*0.01/TB", "-fps_mode", "vfr", "-enc_time_base", "1/1000"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    cmd += ["-fflags", "+bitexact", "-map_metadata", "-1", str(path)]
    subprocess.run(cmd, check=True)
    return path


@pytest.fixture
def media(tmp_path: Path):
    """Factory: ``media("name.mp4", seconds=..., ...)`` writes into a temp folder."""

    def factory(name: str, **kw) -> Path:
        return make_media(tmp_path / "raw" / name, **kw)

    return factory


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real clips not found at {REAL} (they live in ../shared/data/real beside the repository)")
    return REAL
