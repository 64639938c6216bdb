"""Videos for the metrics CLI: pairing by name, decoding and frame alignment (ffmpeg through :mod:`core.media`).

Alignment (recorded by :func:`protocol`):

* frame rate: both videos resampled to 25 fps (:data:`FPS`, the rate of our clips and SyncNet's) by
  ffmpeg's ``fps`` filter (``round=near``: output frame ``i`` is the input frame nearest time
  ``i / 25``; frames are duplicated or dropped, never blended);
* length: both truncated to the shorter one (frame ``i`` of one is compared with frame ``i`` of the
  other, from each video's first frame; no temporal search);
* size: both resized to ``size`` x ``size`` (default 512) by ffmpeg's ``scale`` with ``flags=area``
  (the filter ingest encodes with); the aspect ratio is NOT kept (talking-face outputs are square
  face crops; a non-square input is squashed and the CLI warns); no crop;
* colour: ffmpeg's conversion to ``rgb24`` (its default YUV matrix for untagged video), uint8.

Landmarks (``<name>.landmarks.npy``, ``(T, 478, 2|3)``, pixels of the video they belong to, as ingest
writes them; NaN where no face): frame ``i`` of the 25 fps timeline takes the track's frame
``round(i * f / 25)`` (``f`` the video's own frame rate; the identity at 25 fps), and the points are
scaled to the resized frame with pixel centres kept (``x' = (x + 0.5) size / W - 0.5``, same for y).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import media

__all__ = ["FPS", "VIDEO_EXTENSIONS", "VideoInfo", "align_landmarks", "decode", "list_videos", "pair_videos", "probe", "protocol"]

log = logging.getLogger(__name__)

FPS = 25
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
AUDIO_RATE = 16000


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    width: int
    height: int
    has_audio: bool


def list_videos(path: Path) -> dict[str, Path]:
    """``{name: file}``: one video file (its stem), or the video files of a folder (not recursive)."""
    path = Path(path)
    if path.is_file():
        return {path.stem: path}
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such video file or folder")
    return {p.stem: p for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS}


def pair_videos(pred: Path, target: Path) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """``(pairs, pred_only, target_only)``: videos paired by file name (stem). Two files pair with each
    other whatever their names (named after the generated one)."""
    if Path(pred).is_file() and Path(target).is_file():
        return [(Path(pred).stem, Path(pred), Path(target))], [], []
    p, t = list_videos(pred), list_videos(target)
    pairs = [(name, p[name], t[name]) for name in sorted(p) if name in t]
    return pairs, sorted(set(p) - set(t)), sorted(set(t) - set(p))


def probe(path: Path) -> VideoInfo:
    """Frame rate (average, else nominal), display size and whether there is an audio stream."""
    info = media.ffprobe(path)
    streams = info.get("streams", [])
    video = [s for s in streams if s.get("codec_type") == "video"]
    if not video:
        raise media.MediaError(f"{path}: no video stream")
    v = video[0]
    fps = media.parse_rate(v.get("avg_frame_rate")) or media.parse_rate(v.get("r_frame_rate")) or float(FPS)
    w, h = media.frame_size(v)
    return VideoInfo(Path(path), fps, w, h, any(s.get("codec_type") == "audio" for s in streams))


def decode(path: Path, size: int, fps: int = FPS) -> np.ndarray:
    """``(T, size, size, 3)`` uint8 RGB frames at ``fps`` (module docstring)."""
    vf = f"fps=fps={fps}:round=near,scale={size}:{size}:flags=area,format=rgb24"
    out = media.run_ffmpeg(["-threads", "1", "-i", str(path), "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf,
                            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], what=str(path))
    n = len(out) // (size * size * 3)
    buf = bytearray(out)  # writable (torch.from_numpy refuses read-only memory); the bytes are freed on return
    del out
    return np.frombuffer(buf, dtype=np.uint8)[: n * size * size * 3].reshape(n, size, size, 3)


def decode_audio(path: Path) -> np.ndarray:
    """The audio track as 16 kHz mono float32 (:func:`core.media.decode_audio`)."""
    return media.decode_audio(path, AUDIO_RATE)


def align_landmarks(track: np.ndarray, frames: int, fps: float, width: int, height: int, size: int) -> np.ndarray:
    """``(frames, K, 2)`` float64 landmarks on the aligned timeline and resized frames (module docstring)."""
    lm = np.asarray(track, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[-1] not in (2, 3) or len(lm) == 0:
        raise ValueError(f"expected a (T, K, 2|3) landmark track, got {lm.shape}")
    idx = np.clip(np.rint(np.arange(frames) * fps / FPS).astype(np.int64), 0, len(lm) - 1)
    out = lm[idx, :, :2].copy()
    out[..., 0] = (out[..., 0] + 0.5) * size / width - 0.5
    out[..., 1] = (out[..., 1] + 0.5) * size / height - 0.5
    return out


def protocol(size: int) -> dict:
    return {"fps": f"both resampled to {FPS} fps (ffmpeg fps filter, round=near: nearest frame, no blending)",
            "length": "both truncated to the shorter video, frame i against frame i from each video's first frame",
            "size": f"both resized to {size}x{size} (ffmpeg scale flags=area), aspect ratio not kept, no crop",
            "colour": "ffmpeg rgb24 (its default YUV->RGB matrix), uint8; metrics read [0, 1] floats (/255)",
            "pairing": "by file name (stem); two files pair with each other",
            "landmarks": f"<name>.landmarks.npy (T, 478, 2|3) pixels of the ground-truth video; frame i uses track frame "
                         f"round(i * fps / {FPS}); scaled to {size}x{size} (pixel centres kept); the ground truth's track "
                         "crops both videos unless --pred-landmarks gives the generated video's own",
            "audio": f"{AUDIO_RATE} Hz mono (soxr) of the generated video, else of the ground truth (Sync only)"}
