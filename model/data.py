"""Training samples streamed from the selected clips and their feature sidecars (paper section 4).

A :class:`ClipWindows` dataset reads ``shards/splits/<split>.jsonl`` (written by ``select``), streams
the clip shards ``shards/clips/<ds>/<shard>`` with WebDataset and zips them by key with the feature
sidecars ``shards/features/<f>/<ds>/<shard>`` (same shard names and key order). Each selected clip
gives ``samples_per_clip`` samples; a sample's frame choice comes from a generator seeded with
``(seed, epoch, worker, position)``, so the stream is reproducible and resumable.

Stage 1 sample (image pairs with motion frames)::

    reference      (3, S, S) float32 in [-1, 1]   a random frame of the clip (not the target)
    target         (3, S, S)                      a random frame t
    motion_frames  (M, 3, S, S)                   frames t-M .. t-1 (indices clamped to the clip)
    text_states    (77, D) float32                caption's CLIP text states (if caption is configured)

Stage 2 sample (T = ``target_frames`` = 14, M = ``motion_frames`` = 2, c = ``audio_context``)::

    frames          (T, 3, S, S) float32 in [-1, 1]  frames s .. s+T-1, s uniform in [M, F-T]
    motion_frames   (M, 3, S, S)                     frames s-M .. s-1
    reference       (3, S, S)                        a random keyframe (or frame: stage2_reference) of the clip
    audio_embed     (T + 2c, L, H) float32            wav2vec2 states of frames s-c .. s+T+c-1, clamped to
                                                     [0, F-1] as ``frame_windows`` clamps: AudioProjection
                                                     output rows c .. c+T-1 belong to ``frames``
    text_emotion    (C_t,) float32                    E_t: mean per-frame text-emotion probabilities of the window
    speech_emotion  (C_ser,) float32                  E_ser: mean per-frame speech-emotion probabilities
    valence_arousal (T, 2) float32                    per-frame valence, arousal: E_va (eq. 1, resampled to K
                                                     segments with ``fit_segments``) and the emo-loss target
    landmarks       (T, 478, 3) float32               MediaPipe landmarks of the window in output pixels
    text_states     (77, D) float32                   caption's CLIP text states

With ``pixels: uint8`` the frame tensors (``frames``, ``motion_frames``, ``reference``, ``target``) are
uint8 RGB in [0, 255] instead; :func:`model_pixels` turns them into the float [-1, 1] frames on the device.

Every sample also holds ``dataset``, ``key``, the frame indices (``frame_index`` (T,),
``motion_index`` (M,), ``reference_index``, ``audio_index`` (T+2c,)) and ``worker``/``position``
(for :class:`LoaderState`). S is ``size``: frames are resized (area) when the clips differ.

Sharding: the global workers are (rank, DataLoader worker) pairs. With at least as many shards as
global workers each worker streams its own shards (seeded shard order per epoch); otherwise each
reads all and keeps every world-th clip. With several ranks and ``equal_rank_epochs`` (default) every
global worker yields exactly :meth:`ClipWindows.epoch_samples` samples per epoch: one with more clips
stops early (a different subset each epoch, as the shard order is reshuffled), one with fewer goes
round its clips again with new windows. Clips pass a seeded shuffle buffer. Resume: feed every
batch to :class:`LoaderState` and give its ``state_dict()`` back to :meth:`ClipWindows.load_state_dict`;
each worker then skips (without decoding) the positions it already delivered. The order depends
on seed, epoch and the number of global workers.

Decoding uses OpenCV's FFmpeg backend (no torchvision). :class:`ClipVideo` indexes a clip's mp4 once
and decodes each request from the IDR frame of its GOP, leaving out unwanted non-reference frames;
``reference`` is an IDR frame by default (``stage2_reference``). Files it cannot index fall back to
OpenCV's frame seek (:func:`decode_frames`).
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_iterator

from core.mp4 import ClipVideo, decode_frames

STAGES = ("stage1", "stage2")

#: The sidecar member each feature contributes to a sample (agreed sidecar formats).
FEATURE_MEMBERS = {
    "audio_embed": "npy",  # (F, L, H) float16
    "emotion_text": "frames.npy",  # (F, C_t) float32
    "emotion_speech": "frames.npy",  # (F, C_ser) float32
    "valence_arousal": "frames.npy",  # (F, 3) float32: valence, arousal, dominance
    "caption": "text_states.npy",  # (77, D) float16
}
PER_FRAME = {"audio_embed", "emotion_text", "emotion_speech", "valence_arousal"}


@dataclass(frozen=True)
class DataParams:
    """``data`` section of params.yaml."""

    size: int = 512
    target_frames: int = 14
    motion_frames: int = 2
    audio_context: int = 2  # must equal the audio projection's context_frames
    stage1_features: list[str] = field(default_factory=lambda: ["caption"])
    stage2_features: list[str] = field(default_factory=lambda: list(FEATURE_MEMBERS))
    shuffle_buffer: int = 32  # clips
    samples_per_clip: int = 1
    seed: int = 0
    # stage-2 reference frame: "any" frame of the clip (uniform), or one of its "keyframe"s (uniform over the
    # IDR frames, one per GOP: one decoded frame instead of about 9 when it lies outside the window's GOPs)
    stage2_reference: Literal["any", "keyframe"] = "keyframe"
    # frame tensors: float32 in [-1, 1], or uint8 in [0, 255] (a quarter of the bytes between DataLoader workers
    # and to the GPU, and ~30% less loader CPU; convert with model_pixels on the device)
    pixels: Literal["float32", "uint8"] = "float32"
    # with several ranks, every global worker yields the same number of samples per epoch (len(clips) x
    # samples_per_clip // workers), so no rank waits at a collective for one that ran out of data
    equal_rank_epochs: bool = True

    def __post_init__(self) -> None:
        for name in ("stage1_features", "stage2_features"):
            unknown = [f for f in getattr(self, name) if f not in FEATURE_MEMBERS]
            if unknown:
                raise ValueError(f"{name}: unknown feature '{unknown[0]}' (the loader reads: {', '.join(FEATURE_MEMBERS)})")
        if self.target_frames < 1 or self.motion_frames < 0 or self.audio_context < 0 or self.size < 8:
            raise ValueError("target_frames >= 1, motion_frames >= 0, audio_context >= 0 and size >= 8 are required")
        if self.stage2_reference not in ("any", "keyframe"):
            raise ValueError(f"stage2_reference must be 'any' or 'keyframe', got {self.stage2_reference!r}")
        if self.pixels not in ("float32", "uint8"):
            raise ValueError(f"pixels must be 'float32' or 'uint8', got {self.pixels!r}")


class MissingFeatureError(RuntimeError):
    """A configured feature has no usable data for a selected clip."""


def to_tensor(frames: list[np.ndarray], bgr: bool = False, dtype: str = "float32") -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 RGB (or BGR) -> ``(N, 3, H, W)`` RGB: float32 in [-1, 1], or uint8 in [0, 255]
    (``dtype="uint8"``; :func:`model_pixels` then does the float conversion on the training device)."""
    n, (h, w) = len(frames), frames[0].shape[:2]
    if dtype == "uint8":
        raw = np.empty((n, 3, h, w), np.uint8)
        for i, frame in enumerate(frames):
            for c, plane in enumerate(cv2.split(frame)):
                raw[i, 2 - c if bgr else c] = plane
        return torch.from_numpy(raw)
    out = np.empty((n, 3, h, w), np.float32)
    for i, frame in enumerate(frames):  # one frame at a time: it stays in cache for the scaling
        planes = cv2.split(frame)
        for c in range(3):
            np.multiply(planes[2 - c if bgr else c], np.float32(1 / 127.5), out=out[i, c], casting="unsafe")
        np.subtract(out[i], np.float32(1), out=out[i])
    return torch.from_numpy(out)


def model_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Frames as the model takes them: float in [-1, 1]. uint8 [0, 255] frames (``data.pixels: uint8``)
    are converted, on whatever device they are (after ``.to(device)``); float frames pass through."""
    if pixels.dtype == torch.uint8:
        return pixels.to(torch.float32).mul_(1 / 127.5).sub_(1)
    return pixels


# -- windows --------------------------------------------------------------------------------------
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
    return {
        "frame_index": np.arange(start, start + t),
        "motion_index": np.clip(np.arange(start - m, start), 0, frames - 1),
        "reference_index": _reference(frames, p, rng, keyframes),
        "audio_index": np.clip(np.arange(start - c, start + t + c), 0, frames - 1),
    }


def _reference(frames: int, p: DataParams, rng: np.random.Generator, keyframes: np.ndarray | None) -> np.int64:
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


# -- the dataset ----------------------------------------------------------------------------------
def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def read_split(splits_dir: Path, split: str) -> list[dict[str, Any]]:
    path = Path(splits_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dvc repro select` first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class ClipWindows(IterableDataset):
    """Stage-1 or stage-2 samples of the clips of one split (see the module docstring)."""

    def __init__(self, params: DataParams, stage: str, split: str = "train", shard_root: Path | str = "shards",
                 splits_dir: Path | str | None = None, rank: int | None = None, world_size: int | None = None):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.p, self.stage, self.split = params, stage, split
        self.root = Path(shard_root)
        self.clips = read_split(Path(splits_dir) if splits_dir else self.root / "splits", split)
        self.features = list(params.stage1_features if stage == "stage1" else params.stage2_features)
        self.units = sorted({(c["dataset"], c["shard"]) for c in self.clips})
        self.unit_clips = Counter((c["dataset"], c["shard"]) for c in self.clips)  # selected clips per shard
        self.selected = {(c["dataset"], c["key"]): c for c in self.clips}
        for dataset in sorted({d for d, _ in self.units}):
            for feature in self.features:
                folder = self.root / "features" / feature / dataset
                if not folder.is_dir():
                    raise MissingFeatureError(f"feature {feature} has no sidecar for dataset {dataset} ({folder}): run "
                                              f"`dvc repro extract@{feature}-{dataset}` or remove {feature} from data.{stage}_features")
        dist_rank, dist_world = _distributed()
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world if world_size is None else world_size
        self.epoch = 0
        self.skip: dict[int, int] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.skip = epoch, {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`LoaderState.state_dict`: each worker skips the positions it delivered."""
        self.epoch = int(state["epoch"])
        self.skip = {int(k): int(v) for k, v in state["positions"].items()}

    # -- streaming --
    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * workers + wid, self.world_size * workers

    def _members(self, feature: str | None) -> set[str]:
        if feature is None:
            return {"json", "mp4"} | ({"landmarks.npy"} if self.stage == "stage2" else set())
        return {"json", FEATURE_MEMBERS[feature]}

    def _read_tar(self, path: Path, keep: set[str]) -> Iterator[dict[str, Any]]:
        with open(path, "rb") as stream:
            files = tar_file_iterator(stream, skip_meta=None, select_files=lambda name: name.split(".", 1)[-1] in keep)
            yield from group_by_keys(({**f, "__url__": str(path)} for f in files), lcase=False)

    def _zipped(self, dataset: str, shard: str) -> Iterator[dict[str, Any]]:
        """Clip samples of one shard with ``<feature>`` entries (the sidecar samples) attached."""
        clip_tar = self.root / "clips" / dataset / shard
        sides = {f: self.root / "features" / f / dataset / shard for f in self.features}
        for f, path in sides.items():
            if not path.is_file():
                raise MissingFeatureError(f"{path} not found: the {f} sidecar of {dataset} lacks shard {shard} "
                                          f"(re-run `dvc repro extract@{f}-{dataset}`)")
        streams = {f: self._read_tar(p, self._members(f)) for f, p in sides.items()}
        for sample in self._read_tar(clip_tar, self._members(None)):
            key = sample["__key__"]
            for f, it in streams.items():
                side = next(it, None)
                if side is None or side["__key__"] != key:
                    raise MissingFeatureError(f"{sides[f]}: expected {key}, found {side and side['__key__']}: the {f} "
                                              f"sidecar is not aligned with {clip_tar} (re-run `dvc repro extract@{f}-{dataset}`)")
                sample[f] = side
            if (dataset, key) in self.selected:
                sample["__dataset__"], sample["__shard__"] = dataset, shard
                yield sample

    def _assignment(self, world: int) -> tuple[list[tuple[str, str]], bool]:
        """This epoch's unit order, and whether each global worker streams its own shards (when there
        are at least as many shards, each holding a selected clip, as workers)."""
        order = np.random.default_rng([self.p.seed, self.epoch]).permutation(len(self.units))
        return [self.units[i] for i in order], len(self.units) >= world

    def worker_clips(self, gid: int, world: int) -> int:
        """How many selected clips global worker ``gid`` of ``world`` streams in one pass this epoch."""
        units, by_shard = self._assignment(world)
        if by_shard:
            return sum(self.unit_clips[u] for u in units[gid::world])
        total = len(self.clips)
        return total // world + int(gid < total % world)

    def _clips(self, gid: int, world: int) -> Iterator[dict[str, Any]]:
        units, by_shard = self._assignment(world)
        counter = 0
        for unit in (units[gid::world] if by_shard else units):
            for sample in self._zipped(*unit):
                if by_shard or counter % world == gid:
                    yield sample
                counter += 1

    def _shuffled(self, clips: Iterator[dict[str, Any]], gid: int, rerun: int = 0) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng([self.p.seed, self.epoch, gid, 1, *([rerun] if rerun else [])])
        buffer: list[dict[str, Any]] = []
        for clip in clips:
            buffer.append(clip)
            if len(buffer) >= max(1, self.p.shuffle_buffer):
                i = int(rng.integers(len(buffer)))
                buffer[i], buffer[-1] = buffer[-1], buffer[i]
                yield buffer.pop()
        while buffer:
            i = int(rng.integers(len(buffer)))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if get_worker_info() is not None:
            cv2.setNumThreads(1)  # DataLoader workers are the parallelism: one thread each for resize/split
        gid, world = self._worker()
        skip = self.skip.get(gid, 0)
        limit = self.epoch_samples(world) if self.p.equal_rank_epochs and self.world_size > 1 else None
        if limit and not self.worker_clips(gid, world):
            raise ValueError(f"split {self.split} has {len(self.clips)} clips for {world} global workers (ranks x DataLoader "
                             f"workers): worker {gid} would have none. Use fewer DataLoader workers or select more clips")
        position, rerun = 0, 0
        while True:
            for clip in self._shuffled(self._clips(gid, world), gid, rerun):
                for _ in range(self.p.samples_per_clip):
                    if limit is not None and position >= limit:
                        return
                    position += 1
                    if position <= skip:
                        continue
                    rng = np.random.default_rng([self.p.seed, self.epoch, gid, position])
                    sample = self.build(clip, rng)
                    sample.update(worker=gid, position=position)
                    yield sample
            if limit is None or position >= limit or position == 0:
                return
            rerun += 1  # a worker with fewer clips than its share goes round its clips again (new windows)

    def epoch_samples(self, world: int | None = None) -> int:
        """Samples each global worker yields per epoch with ``equal_rank_epochs`` (and several ranks):
        the same for all, so every rank runs the same number of steps and DDP never waits on a rank
        that ran out. Workers with more clips stop early, those with fewer go round again."""
        world = world or self._worker()[1]
        return len(self.clips) * self.p.samples_per_clip // world

    # -- samples --
    def _feature(self, clip: dict[str, Any], feature: str, frames: int) -> np.ndarray:
        side, dataset, key = clip[feature], clip["__dataset__"], clip["__key__"]
        body = json.loads(side["json"])
        member = FEATURE_MEMBERS[feature]
        if body.get("status") != "ok" or member not in side:
            status = body.get("status", "unknown")
            why = f"{status} ({body.get('reason')})" if body.get("reason") else status
            raise MissingFeatureError(
                f"clip {dataset}/{key}: feature {feature} is {why}, no {key}.{member} in its sidecar. Fix: add {feature} to "
                f"select.required_features (select then drops such clips), remove it from data.{self.stage}_features, "
                f"or re-run `dvc repro extract@{feature}-{dataset}`")
        array = np.load(io.BytesIO(side[member]))
        if feature in PER_FRAME and array.shape[0] != frames:
            raise MissingFeatureError(f"clip {dataset}/{key}: {feature} {member} has {array.shape[0]} rows, the clip "
                                      f"{frames} frames (re-run `dvc repro extract@{feature}-{dataset}`)")
        return array

    def build(self, clip: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """One sample of a zipped clip (``rng`` chooses the frames)."""
        key, dataset = clip["__key__"], clip["__dataset__"]
        frames = int(self.selected[(dataset, key)]["frames"])
        p = self.p
        if "__video__" not in clip:  # indexed once per clip, reused by its samples_per_clip samples
            try:
                clip["__video__"] = ClipVideo(clip["mp4"])
            except (ValueError, KeyError, IndexError, struct.error):
                clip["__video__"] = None  # not an mp4 the index reads: OpenCV seeks instead
        video = clip["__video__"]
        if self.stage == "stage1":
            idx = stage1_indices(frames, p, rng)
        else:
            idx = stage2_indices(frames, p, rng, video.keyframes if video is not None else None)
        needed = [*idx["frame_index"].tolist(), *idx["motion_index"].tolist(), int(idx["reference_index"])]
        try:
            decoded = video.decode(needed, p.size) if video is not None else decode_frames(clip["mp4"], needed, p.size, rgb=False)
        except ValueError:
            try:
                decoded = decode_frames(clip["mp4"], needed, p.size, rgb=False)
            except ValueError as e:
                raise ValueError(f"clip {dataset}/{key} ({clip['__shard__']}): {e}") from e
        out: dict[str, Any] = {"dataset": dataset, "key": key, **{k: torch.from_numpy(np.asarray(v)) for k, v in idx.items()}}
        out["reference"] = to_tensor([decoded[int(idx["reference_index"])]], bgr=True, dtype=p.pixels)[0]
        m = p.motion_frames
        motion = to_tensor([decoded[i] for i in idx["motion_index"].tolist()], bgr=True, dtype=p.pixels) if m else \
            torch.zeros(0, 3, p.size, p.size, dtype=getattr(torch, p.pixels))
        out["motion_frames"] = motion
        window = to_tensor([decoded[i] for i in idx["frame_index"].tolist()], bgr=True, dtype=p.pixels)
        if self.stage == "stage1":
            out["target"] = window[0]
        else:
            out["frames"] = window
            f = idx["frame_index"]
            if "audio_embed" in self.features:
                out["audio_embed"] = torch.from_numpy(self._feature(clip, "audio_embed", frames)[idx["audio_index"]].astype(np.float32))
            if "emotion_text" in self.features:
                out["text_emotion"] = torch.from_numpy(self._feature(clip, "emotion_text", frames)[f].mean(0).astype(np.float32))
            if "emotion_speech" in self.features:
                out["speech_emotion"] = torch.from_numpy(self._feature(clip, "emotion_speech", frames)[f].mean(0).astype(np.float32))
            if "valence_arousal" in self.features:
                out["valence_arousal"] = torch.from_numpy(self._feature(clip, "valence_arousal", frames)[f, :2].astype(np.float32))
            out["landmarks"] = self._landmarks(clip, frames, f)
        if "caption" in self.features:
            out["text_states"] = torch.from_numpy(self._feature(clip, "caption", frames).astype(np.float32))
        return out

    def _landmarks(self, clip: dict[str, Any], frames: int, index: np.ndarray) -> torch.Tensor:
        dataset, key = clip["__dataset__"], clip["__key__"]
        if "landmarks.npy" not in clip:
            raise MissingFeatureError(f"clip {dataset}/{key}: no {key}.landmarks.npy in its clip shard; stage 2 needs the "
                                      f"landmark targets (ingest with steps.face.enabled: true)")
        lm = np.load(io.BytesIO(clip["landmarks.npy"]))
        if lm.shape[0] != frames:
            raise MissingFeatureError(f"clip {dataset}/{key}: landmarks.npy has {lm.shape[0]} rows, the clip {frames} frames")
        side = json.loads(clip["json"]).get("meta", {}).get("encode", {}).get("width") or self.p.size
        return torch.from_numpy(lm[index].astype(np.float32) * (self.p.size / float(side)))


class LoaderState:
    """The resumable position of a loader: feed it every batch, save ``state_dict()`` with a checkpoint."""

    def __init__(self, epoch: int = 0):
        self.epoch = epoch
        self.positions: dict[int, int] = {}

    def update(self, batch: dict[str, Any]) -> None:
        for w, pos in zip(torch.as_tensor(batch["worker"]).tolist(), torch.as_tensor(batch["position"]).tolist()):
            self.positions[w] = max(self.positions.get(w, 0), pos)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "positions": dict(self.positions)}


def load_params(path: Path | str | None = None) -> DataParams:
    """The ``data`` section of params.yaml."""
    from core import params

    return params.load(DataParams, "data", path)


__all__ = ["ClipVideo", "ClipWindows", "DataParams", "LoaderState", "MissingFeatureError", "decode_frames", "load_params",
           "model_pixels", "read_split", "stage1_indices", "stage2_indices", "to_tensor"]
