"""Ground-truth videos of the evaluated clips, as the metrics read any method's videos
(:mod:`model.metrics.video`): ``<name>.mp4`` = the clip shard's H.264 stream copied bit for bit (the first
N frames when ``evaluate.max_frames`` cuts it) with the clip's 16 kHz audio muxed as AAC, and
``<name>.landmarks.npy`` = the clip's MediaPipe track (encoded pixels, rows of those frames)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np

from core import media
from model.data.clips import WholeClip


def clip_frames(clip: WholeClip, max_frames: int) -> int:
    """The frames of ``clip`` the evaluation uses (all, or the first ``max_frames``)."""
    return clip.frames if max_frames <= 0 else min(clip.frames, max_frames)


def write_target(clip: WholeClip, folder: Path, frames: int) -> Path:
    """``folder/<key>.mp4`` and ``folder/<key>.landmarks.npy`` (when the clip has landmarks)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{clip.key}.mp4"
    with tempfile.TemporaryDirectory(prefix="eval-target-") as tmp:
        src = Path(tmp) / "clip.mp4"
        src.write_bytes(clip.members["mp4"])
        wav = clip.write_wav(Path(tmp), frames)
        media.run_ffmpeg(["-y", "-i", str(src), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-frames:v", str(frames),
                          "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", *media.BITEXACT, str(out)], what=str(out))
    if "landmarks.npy" in clip.members:
        track = np.load(io.BytesIO(clip.members["landmarks.npy"]))
        np.save(folder / f"{clip.key}.landmarks.npy", track[:frames])
    return out
