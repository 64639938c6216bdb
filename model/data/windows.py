"""Which frames a sample takes: stage-1 and stage-2 windows, the reference frame, member rows.

All choices come from the ``rng`` the dataset seeds per sample, so a sample is reproducible from
``(seed, epoch, worker, position)``.
"""

from __future__ import annotations

import numpy as np

from core.shards import Member

from .params import DataParams


def audio_rows(frame_index: np.ndarray, frames: int, context: int) -> np.ndarray:
    """The audio window of a frame window: ``context`` frames more on each side, clamped to
    ``[0, frames - 1]`` as ``model.audio_proj.frame_windows`` clamps."""
    return np.clip(np.arange(int(frame_index[0]) - context, int(frame_index[-1]) + context + 1), 0, frames - 1)


def stage2_indices(frames: int, p: DataParams, rng: np.random.Generator,
                   keyframes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Frame indices of one stage-2 sample of a clip of ``frames`` frames.

    With ``stage2_reference: keyframe`` the reference is uniform over ``keyframes`` (display indices;
    any frame when they are not known)."""
    t, m, c = p.target_frames, p.motion_frames, p.audio_context
    if frames < t:
        raise ValueError(f"clip of {frames} frames is shorter than the {t}-frame window (raise select.min_duration)")
    lo = min(m, frames - t)  # motion frames inside the clip whenever it is long enough
    start = int(rng.integers(lo, frames - t + 1))
    frame_index = np.arange(start, start + t)
    return {
        "frame_index": frame_index,
        "motion_index": np.clip(np.arange(start - m, start), 0, frames - 1),
        "reference_index": choose_reference(frames, p, rng, keyframes),
        "audio_index": audio_rows(frame_index, frames, c),
    }


def choose_reference(frames: int, p: DataParams, rng: np.random.Generator, keyframes: np.ndarray | None) -> np.int64:
    """The stage-2 reference frame: uniform over the clip's keyframes (``stage2_reference: keyframe``,
    when known) or over all its frames."""
    if p.stage2_reference == "keyframe" and keyframes is not None:
        keys = np.asarray(keyframes)[np.asarray(keyframes) < frames]
        if keys.size:
            return np.int64(keys[rng.integers(0, keys.size)])
    return np.int64(rng.integers(0, frames))


def stage1_indices(frames: int, p: DataParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Target, its motion frames and a reference frame (another frame when the clip has two)."""
    m = p.motion_frames
    target = int(rng.integers(min(m, frames - 1), frames))
    ref = int(rng.integers(0, frames - 1)) if frames > 1 else 0
    ref += int(frames > 1 and ref >= target)
    return {"frame_index": np.array([target]), "motion_index": np.clip(np.arange(target - m, target), 0, frames - 1),
            "reference_index": np.int64(ref)}


def member_rows(member: Member, idx: dict[str, np.ndarray], frames: int, p: DataParams) -> np.ndarray | None:
    """The rows of a per-frame member a sample takes (``frames``/``mean``: the window's frames;
    ``audio``: its audio window), None for a whole-clip member (``window: clip``)."""
    if member.window == "clip":
        return None
    if member.window == "audio":
        return idx["audio_index"] if "audio_index" in idx else audio_rows(idx["frame_index"], frames, p.audio_context)
    return idx["frame_index"]
