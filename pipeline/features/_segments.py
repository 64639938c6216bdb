"""50%-overlapping analysis windows over a clip, and their values resampled to video frames.

Paper section 3.6 (E_ser, E_va) and eq. 3 (emo loss): the audio is cut into segments that overlap
by half, each segment gives one vector, and the sequence follows the clip in time.

Edge rule (:func:`overlap_windows`), in samples so that times are exact:

* a clip no longer than one window is a single segment ``[0, n)``;
* otherwise windows of ``w = window_s * sample_rate`` samples start at ``0, h, 2h, ...`` with
  hop ``h = w // 2`` while they end inside the clip; when the last of these ends before the clip
  end, one more window ``[n - w, n)`` ends exactly at the clip end (it overlaps its predecessor by
  at least 50%). Every window of a long clip is therefore exactly ``w`` samples long, which lets a
  batch of them run through a model without padding, and every sample is covered.

Per-frame values (:func:`frame_values`): frame ``i`` (centre ``(i + 0.5) / fps`` seconds) takes the
**average** of the segments whose ``[start, end)`` covers its centre (the last segment also
covers its end point); no interpolation. A frame no segment covers takes ``fill`` when given,
else the value of the nearest segment. Output shape: ``(frames, C)`` for segment values ``(K, C)``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


def overlap_windows(n_samples: int, sample_rate: int, window_s: float) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` sample bounds of the 50%-overlapping windows of a signal (rule above)."""
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    w = int(round(window_s * sample_rate))
    if n_samples <= w:
        return [(0, int(n_samples))]
    h = max(1, w // 2)
    bounds = [(s, s + w) for s in range(0, n_samples - w + 1, h)]
    if bounds[-1][1] < n_samples:
        bounds.append((n_samples - w, n_samples))
    return bounds


def segment_times(bounds: Sequence[tuple[int, int]], sample_rate: int) -> list[dict[str, float]]:
    """``[{"start": s, "end": s}, ...]`` in seconds (rounded to 0.1 ms) for the sidecar json."""
    return [{"start": round(a / sample_rate, 4), "end": round(b / sample_rate, 4)} for a, b in bounds]


def frame_values(starts: Sequence[float], ends: Sequence[float], values: np.ndarray, frames: int, fps: float,
                 fill: np.ndarray | None = None) -> np.ndarray:
    """``(frames, C)``: per frame, the mean of the segment values covering its centre (rule above)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) != len(starts) or len(starts) != len(ends):
        raise ValueError(f"values must be (K, C) with K = {len(starts)} segments, got {values.shape}")
    out = np.zeros((frames, values.shape[1]), np.float64)
    if frames == 0:
        return out.astype(np.float32)
    centres = (np.arange(frames) + 0.5) / fps
    s = np.asarray(starts, np.float64)[None, :]
    e = np.asarray(ends, np.float64)[None, :]
    cover = (centres[:, None] >= s) & (centres[:, None] < e)
    if len(starts):
        last = int(np.argmax(e[0]))
        cover[:, last] |= np.isclose(centres, e[0, last])
    counts = cover.sum(axis=1)
    out[counts > 0] = (cover[counts > 0].astype(np.float64) @ values) / counts[counts > 0, None]
    missing = counts == 0
    if missing.any():
        if fill is not None:
            out[missing] = np.asarray(fill, np.float64)
        elif len(starts):
            mid = (s[0] + e[0]) / 2
            out[missing] = values[np.argmin(np.abs(centres[missing, None] - mid[None, :]), axis=1)]
    return out.astype(np.float32)


def length_batches(lengths: Sequence[int], max_batch: int) -> list[list[int]]:
    """Indices grouped by equal length, at most ``max_batch`` per group (input order kept inside a
    group): the windows of a batch of clips run through a model without padding."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(int(n), []).append(i)
    size = max(1, max_batch)
    return [idx[k: k + size] for _, idx in sorted(groups.items()) for k in range(0, len(idx), size)]


def run_windows(signals: Sequence[np.ndarray], sample_rate: int, window_s: float, max_batch: int,
                forward: Callable[[list[np.ndarray]], Sequence[Any]]) -> tuple[list[list[tuple[int, int]]], list[list[Any]]]:
    """Cut every signal into its 50%-overlapping windows and run ``forward(windows)`` (one row per
    window) over equal-length groups of at most ``max_batch``; per signal: window bounds and rows."""
    bounds = [overlap_windows(len(x), sample_rate, window_s) for x in signals]
    flat = [(i, x[a:b]) for i, (x, bs) in enumerate(zip(signals, bounds)) for a, b in bs]
    rows: list[Any] = [None] * len(flat)
    for group in length_batches([len(w) for _, w in flat], max_batch):
        for k, row in zip(group, forward([flat[k][1] for k in group])):
            rows[k] = row
    per_signal: list[list[Any]] = [[] for _ in signals]
    for (i, _), row in zip(flat, rows):
        per_signal[i].append(row)
    return bounds, per_signal


def clip_segments(bounds: Sequence[tuple[int, int]], values: np.ndarray, encode: dict[str, Any], n_samples: int,
                  sample_rate: int) -> tuple[list[dict[str, float]], int, np.ndarray]:
    """Segment times, the clip's frame count (``encode["frames"]``, else from the track length) and
    the per-frame array ``(frames, C)`` of a clip's window values ``(K, C)``."""
    fps = encode.get("fps", 25)
    frames = int(encode.get("frames") or round(n_samples / sample_rate * fps))
    times = segment_times(bounds, sample_rate)
    return times, frames, frame_values([t["start"] for t in times], [t["end"] for t in times], values, frames, fps)
