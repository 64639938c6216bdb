"""``segment``: split a source's audio-video span into 3-20 s clips, cutting at silences.

Works on whole 25 fps frames so every clip has an integer frame count and an audio length of
exactly ``frames * sample_rate / fps`` samples. A span longer than ``max_s`` is cut greedily: the
next cut is the quietest frame (audio RMS in dB, smoothed over ``smooth_s``) among those that keep
both this clip and the remainder within [``min_s``, ``max_s``]; within ``tie_db`` of the quietest,
the latest frame wins, so clips come out as long as the silences allow.

Fan-out: one source record in, a list of clip records out (keys ``<dataset>__<source>__<start_ms>``;
``<dataset>__<source>__<range>__<start_ms>`` for a record listed with a time range, ``meta["range"]``).
Drops: ``too_short`` when the span holds fewer than ``min_s`` seconds of frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.clip import TOO_SHORT, Clip, Drop, clip_key
from pipeline.steps import Resources, Step


@dataclass(frozen=True)
class SegmentParams:
    """``steps.segment``."""

    fps: int = 25
    min_s: float = 3.0
    max_s: float = 20.0
    smooth_s: float = 0.2  # energy smoothing window for picking cuts
    tie_db: float = 1.0  # cuts this close to the quietest frame count as equally quiet
    silence_db: float = -40.0  # a cut below this (dBFS) is recorded as "at silence"

    def __post_init__(self) -> None:
        if self.max_s < 2 * self.min_s:
            raise ValueError(f"steps.segment: max_s ({self.max_s}) must be at least 2 * min_s ({self.min_s}) so every long span can be split")


class Segment(Step):
    name = "segment"
    version = "1"
    resources = Resources(cpus=1)

    def __init__(self, params: SegmentParams | None = None):
        super().__init__(params or SegmentParams())

    def __call__(self, clip: Clip, out: Path) -> list[Clip] | Drop:
        p = self.params
        am = clip.meta["audio"]
        sr = int(am["sample_rate"])
        span_start, span_end = float(am["span_start_s"]), float(am["span_end_s"])
        n_frames = int(math.floor((span_end - span_start) * p.fps + 1e-6))
        min_f, max_f = int(math.ceil(p.min_s * p.fps - 1e-6)), int(math.floor(p.max_s * p.fps + 1e-6))
        if n_frames < min_f:
            return Drop(TOO_SHORT, f"{clip.source_rel}: {n_frames / p.fps:.2f} s of audio+video, need {p.min_s:g} s")

        audio = np.load(clip.files["audio_npy"], mmap_mode="r")
        first = int(round((span_start - float(am["offset_s"])) * sr))
        db = frame_energy_db(np.asarray(audio[first : first + n_frames * sr // p.fps]), sr // p.fps, n_frames)
        db = _smooth(db, max(1, int(round(p.smooth_s * p.fps))))
        bounds = plan_cuts(db, min_f, max_f, p.tie_db)

        clips = []
        for i, (a, b) in enumerate(bounds):
            start = span_start + a / p.fps
            cut_db = float(db[a]) if a > 0 else None
            seg = {
                "index": i, "count": len(bounds), "start_frame": a, "frames": b - a,
                "cut_db": round(cut_db, 2) if cut_db is not None else None,
                "cut_at_silence": bool(cut_db is not None and cut_db <= p.silence_db),
            }
            clips.append(clip.evolve(
                key=clip_key(clip.dataset, clip.source_rel, start, _span(clip)),
                start=round(start, 6),
                duration=(b - a) / p.fps,
                meta={"segment": seg},
            ))
        return clips


def _span(clip: Clip) -> tuple[float, float] | None:
    """The source time range this record was listed with (``meta["range"]``), if any."""
    r = clip.meta.get("range")
    return (float(r["start"]), float(r["end"])) if r else None


def frame_energy_db(x: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """RMS level in dBFS of each of ``n_frames`` consecutive ``hop``-sample frames (zero-padded)."""
    need = n_frames * hop
    if x.size < need:
        x = np.pad(x, (0, need - x.size))
    frames = x[:need].astype(np.float64).reshape(n_frames, hop)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    kernel = np.ones(width) / width
    return np.convolve(np.pad(x, (width // 2, width - 1 - width // 2), mode="edge"), kernel, mode="valid")


def plan_cuts(db: np.ndarray, min_f: int, max_f: int, tie_db: float) -> list[tuple[int, int]]:
    """Frame ranges ``[(a, b), ...]`` covering ``len(db)`` frames, each ``min_f <= b - a <= max_f``."""
    n = len(db)
    bounds, c = [], 0
    while n - c > max_f:
        lo, hi = c + min_f, min(c + max_f, n - min_f)
        window = db[lo : hi + 1]
        quiet = np.flatnonzero(window <= window.min() + tie_db)
        cut = lo + int(quiet[-1])
        bounds.append((c, cut))
        c = cut
    bounds.append((c, n))
    return bounds
