"""Generated frames + the driving audio -> an H.264 mp4 (25 fps, yuv420p, AAC), written atomically.

The video has exactly the frames given; the audio track is the driving audio as it is (not cut), so a
player shows the lip sync and the file's audio and video lengths differ by less than one frame when the
frame count is ``round(seconds x fps)`` (what the generation produces).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core import media


def write_video(path: Path | str, frames: np.ndarray, fps: int = 25, audio: Path | str | None = None, crf: int = 18) -> Path:
    """``frames``: ``(N, H, W, 3)`` uint8 RGB (H, W even)."""
    path = Path(path)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {frames.shape}")
    n, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0"]
    if audio is not None:
        args += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k"]
    args += ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p", "-threads", "1",
             *media.BITEXACT, "-movflags", "+faststart", str(tmp)]
    try:
        media.run_ffmpeg(args, stdin=frames.tobytes(), what=str(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def side_by_side(generated: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(N, H, 2W, 3)``: generated left, ground truth right (the shorter length)."""
    n = min(len(generated), len(target))
    return np.concatenate([generated[:n], target[:n]], axis=2)
