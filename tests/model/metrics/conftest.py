"""Tiny judge folders (made once per session), synthetic face landmarks, tiny videos made with ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from core import weights

JUDGES = ("lpips", "inception", "i3d", "face_3d", "action_units", "sync", "face_va")


def _module(name: str):
    import importlib

    return importlib.import_module(f"judges.{name}")


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    """``weights/<profile>``-like folder holding every judge's tiny stand-in (marker written by hand)."""
    root = tmp_path_factory.mktemp("metrics_weights")
    for name in JUDGES:
        mod = _module(name)
        folder = root / mod.SPEC.name
        folder.mkdir()
        mod.SPEC.make_tiny(folder, 0)
        (folder / weights.MARKER).write_text('{"tiny": true}')
    return root


@pytest.fixture(scope="session")
def judge(weights_dir):
    """``judge("lpips")``: the loaded tiny judge (cached)."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            mod = _module(name)
            cache[name] = mod.load(weights_dir / mod.SPEC.name, "cpu")
        return cache[name]

    return get


def synthetic_landmarks(frames: int, size: int, seed: int = 0, jitter: float = 0.01) -> np.ndarray:
    """``(frames, 478, 3)`` float32 MediaPipe-like points of a frontal face centred in a ``size`` frame:
    the five Deep3DFaceRecon points at the BFM template's layout, eye and lip contours around them,
    the rest on the face oval; a small seeded drift per frame."""
    from judges import action_units, face_3d

    rng = np.random.default_rng(seed)
    cx, cy, k = size * 0.5, size * 0.5, size * 0.3
    ang = rng.uniform(0, 2 * np.pi, 478)
    base = np.stack([cx + 1.0 * k * np.cos(ang), cy + 1.3 * k * np.sin(ang), np.zeros(478)], axis=1)

    def put(idx, x, y, rx, ry):
        idx = np.asarray(idx)
        t = np.linspace(0, 2 * np.pi, len(idx), endpoint=False)
        base[idx, 0], base[idx, 1] = x + rx * np.cos(t), y + ry * np.sin(t)

    tmpl = face_3d.LM3D_5
    (lx, ly), (rx_, ry_), (nx, ny), (mlx, mly), (mrx, mry) = [(cx + k * p[0], cy - k * p[1]) for p in tmpl]
    put(action_units.RIGHT_EYE, lx, ly, 0.12 * k, 0.05 * k)
    put(action_units.LEFT_EYE, rx_, ry_, 0.12 * k, 0.05 * k)
    put(action_units.LIPS, (mlx + mrx) / 2, mly, 0.25 * k, 0.08 * k)
    base[33, :2], base[133, :2] = (lx - 0.12 * k, ly), (lx + 0.12 * k, ly)
    base[362, :2], base[263, :2] = (rx_ - 0.12 * k, ry_), (rx_ + 0.12 * k, ry_)
    base[1, :2] = (nx, ny)
    base[61, :2], base[291, :2] = (mlx, mly), (mrx, mry)
    drift = np.cumsum(rng.normal(0, jitter * size, (frames, 1, 3)), axis=0)
    drift[..., 2] = 0
    return (base[None] + drift).astype(np.float32)


def make_video(path: Path, seconds: float = 2.0, size: int = 64, fps: int = 25, source: str = "testsrc", audio: bool = True) -> Path:
    """A small mp4 (lavfi ``source`` pattern, H.264) with a 16 kHz tone when ``audio``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
           "-f", "lavfi", "-i", f"{source}=size={size}x{size}:rate={fps}:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=16000:duration={seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "1"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "32k"]
    cmd += ["-fflags", "+bitexact", "-map_metadata", "-1", str(path)]
    subprocess.run(cmd, check=True)
    return path
