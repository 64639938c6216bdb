"""Frame helpers shared by the ground-truth target extractors (action_units, face_va, clip_image, sync).

These features run a judge (a frozen perception network from :mod:`judges`) on the clip's OWN frames:
what a loss compares the generated frames against, and what ``select`` can filter on. A clip's
25 fps face-crop frames are decoded in chunks (``frame_batch`` frames at a time, never the whole
clip in memory) with the clip's MediaPipe landmarks (``landmarks.npy`` of the clip shard, in crop
pixels), so the judge's face crop is taken from the same landmarks everywhere: here, in the
losses and in the metrics.

``frame_stride`` > 1 runs the judge on every k-th frame only (frames 0, k, 2k ... and the last)
and fills the others from the nearest computed frame: per-frame members keep the clip's frame
count, which is what the loader checks and cuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from core.clip import Clip
from core.media import clip_frames
from pipeline.features import VIDEO_READS, Extractor, FeatureParams


@dataclass(frozen=True)
class FrameParams(FeatureParams):
    """Params of a judge run over a clip's frames."""

    batch_size: int = 2  # clips per call
    frame_batch: int = 32  # frames per forward pass (and per decoded chunk)
    frame_stride: int = 1  # judge every k-th frame, the others take the nearest computed frame's values
    device: str = "auto"  # auto (cuda when visible) | cpu | cuda

    def __post_init__(self) -> None:
        if self.frame_batch < 1 or self.frame_stride < 1:
            raise ValueError("frame_batch and frame_stride must be at least 1")


def judged_frames(frames: int, stride: int) -> np.ndarray:
    """The frame indices a judge runs on: every ``stride``-th frame and the last."""
    idx = np.arange(0, frames, stride)
    return idx if idx.size and idx[-1] == frames - 1 else np.append(idx, frames - 1)


def fill_nearest(values: np.ndarray, judged: np.ndarray, frames: int) -> np.ndarray:
    """Rows for all ``frames`` from the rows of the ``judged`` frames (nearest judged frame; ties to the earlier)."""
    if len(judged) == frames:
        return values
    pos = np.clip(np.searchsorted(judged, np.arange(frames)), 1, len(judged) - 1) if len(judged) > 1 else np.zeros(frames, int)
    if len(judged) > 1:
        left, right = judged[pos - 1], judged[pos]
        pos = np.where(np.arange(frames) - left <= right - np.arange(frames), pos - 1, pos)
    return values[pos]


def landmark_track(path: str | Path, frames: int) -> np.ndarray:
    """The clip's landmarks ``(frames, 478, 3)`` float32 in crop pixels, gaps filled: a frame with no face
    (NaN, a gap longer than the face step interpolates) takes the nearest frame that has one; a clip
    with none at all is an error (the face filter keeps no such clip)."""
    lm = np.load(path).astype(np.float32)
    if lm.shape[0] != frames or lm.shape[1:] != (478, 3):
        raise ValueError(f"landmarks {lm.shape} do not match the clip's {frames} frames of 478 points")
    have = np.isfinite(lm).all(axis=(1, 2))
    if not have.any():
        raise ValueError("no frame of the clip has face landmarks")
    if not have.all():
        good = np.flatnonzero(have)
        nearest = good[np.abs(np.arange(frames)[:, None] - good[None, :]).argmin(axis=1)]
        lm = lm[nearest]
    return lm


def frame_chunks(clip: Clip, indices: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(frame indices, frames (n, H, W, 3) uint8 RGB)`` of the wanted ``indices`` of the clip's mp4, in
    order, ``chunk`` at a time. One ffmpeg decode streams the clip (the same frame numbering as ingest)."""
    enc = clip.meta.get("encode", {})
    frames, fps = int(enc["frames"]), int(enc.get("fps") or 25)
    size = (int(enc.get("width") or 512), int(enc.get("height") or 512))
    wanted = set(indices.tolist())
    batch_idx: list[int] = []
    batch: list[np.ndarray] = []
    for i, frame in enumerate(clip_frames(clip.files["mp4"], 0.0, fps, frames, size, what=clip.key)):
        if i in wanted:
            batch_idx.append(i)
            batch.append(frame)
            if len(batch) == chunk:
                yield np.asarray(batch_idx), np.stack(batch)
                batch_idx, batch = [], []
    if batch:
        yield np.asarray(batch_idx), np.stack(batch)


class FrameExtractor(Extractor):
    """A judge over every (``frame_stride``-th) frame of the clip: subclasses define :meth:`judge_frames`
    (a chunk of frames and their landmarks -> per-frame arrays) and :meth:`summarise` (the arrays of the
    whole clip -> json values, ``score_*`` values and the files to write)."""

    reads = VIDEO_READS + ("files.landmarks.npy",)

    def judge_frames(self, frames: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def summarise(self, clip: Clip, arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, float], dict[str, np.ndarray]]:
        raise NotImplementedError

    def per_frame(self, clip: Clip) -> dict[str, np.ndarray]:
        """The judge's per-frame arrays of the whole clip (``frames`` rows each)."""
        p = self.params
        frames = int(clip.meta["encode"]["frames"])
        landmarks = landmark_track(clip.files["landmarks.npy"], frames)
        judged = judged_frames(frames, p.frame_stride)
        parts: dict[str, list[np.ndarray]] = {}
        for idx, chunk in frame_chunks(clip, judged, p.frame_batch):
            for name, rows in self.judge_frames(chunk, landmarks[idx]).items():
                parts.setdefault(name, []).append(rows)
        return {name: fill_nearest(np.concatenate(rows), judged, frames) for name, rows in parts.items()}

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        results: list[Any] = []
        for clip, out in zip(clips, outs):
            if "landmarks.npy" not in clip.files:
                raise KeyError(f"{clip.key}: no landmarks.npy in the clip shard; {self.name} needs the face track "
                               f"(ingest with steps.face.enabled: true)")
            values, scores, files = self.summarise(clip, self.per_frame(clip))
            written = {}
            for name, array in files.items():
                np.save(out / name, array)
                written[f"{self.name}.{name}"] = str(out / name)
            values = {**values, "frame_stride": self.params.frame_stride, "frames": int(clip.meta["encode"]["frames"])}
            results.append(clip.evolve(files=written, meta={self.name: values},
                                       scores={f"{self.name}_{k}": float(v) for k, v in scores.items()}))
        return results
