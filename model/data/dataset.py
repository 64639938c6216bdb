"""``ClipWindows``: the training samples of one split, streamed from the clip shards and sidecars.

Every path comes from :class:`core.shards.ShardLayout`; each clip shard is read together with its
sidecars by :func:`core.shards.zip_sidecars` (one pass over each tar, alignment checked there), and
what a sidecar contributes to a sample is its ``members.json`` (:mod:`model.data.features`).
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import IterableDataset, get_worker_info

from core.mp4 import ClipVideo, decode_frames
from core.shards import CLIP_MEMBERS, ShardLayout, zip_sidecars

from .features import MissingFeatureError, fill, resolve
from .params import STAGES, DataParams
from .pixels import to_tensor
from .windows import stage1_indices, stage2_indices

#: The clip shard's landmark member (``landmarks.npy``, per frame, stage-2 landmark targets).
LANDMARKS = next(m for m in CLIP_MEMBERS if m.sample == "landmarks")
_CLIP_READ = {"stage1": frozenset({"json", "mp4"}), "stage2": frozenset({"json", "mp4", LANDMARKS.name})}


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def read_split(where: ShardLayout | Path | str, split: str) -> list[dict[str, Any]]:
    """The selected clips of ``split``: from a :class:`ShardLayout`, or from a splits folder elsewhere
    (the layout's file name, ``<split>.jsonl``)."""
    path = where.split(split) if isinstance(where, ShardLayout) else Path(where) / ShardLayout(Path()).split(split).name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dvc repro select` first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class ClipWindows(IterableDataset):
    """Stage-1 or stage-2 samples of the clips of one split (see the :mod:`model.data` docstring)."""

    def __init__(self, params: DataParams, stage: str, split: str = "train", shard_root: Path | str = "shards",
                 splits_dir: Path | str | None = None, rank: int | None = None, world_size: int | None = None):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.p, self.stage, self.split = params, stage, split
        self.layout = ShardLayout(Path(shard_root))
        self.root = self.layout.root
        self.clips = read_split(splits_dir if splits_dir else self.layout, split)
        self.features = params.features(stage)
        if params.latents == "cached" and "latents" not in self.features:
            raise MissingFeatureError(f"data.latents: cached reads the latents feature: add latents to data.{stage}_features "
                                      f"(and run `dvc repro extract@latents-<dataset>`), or set data.latents: pixels")
        self.units = sorted({(c["dataset"], c["shard"]) for c in self.clips})
        self.unit_clips = Counter((c["dataset"], c["shard"]) for c in self.clips)  # selected clips per shard
        self.selected = {(c["dataset"], c["key"]): c for c in self.clips}
        # the sidecars' declarations, read once per (dataset, feature)
        self.sample_features = resolve(self.layout, (d for d, _ in self.units), self.features, stage)
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

    def _zipped(self, dataset: str, shard: str) -> Iterator[dict[str, Any]]:
        """Selected clip samples of one shard with ``<feature>`` entries (the sidecar samples) attached."""
        features = self.sample_features[dataset]
        sides = {f.name: self.layout.sidecar_shard(f.name, dataset, shard) for f in features}
        for f, path in sides.items():
            if not path.is_file():
                raise MissingFeatureError(f"{path} not found: the {f} sidecar of {dataset} lacks shard {shard} "
                                          f"(re-run `dvc repro extract@{f}-{dataset}`)")
        read = {f.name: f.read for f in features}
        clip_read = _CLIP_READ[self.stage] | ({"wav"} if self.stage == "stage2" and self.p.raw_audio else set())
        for sample in zip_sidecars(self.layout.clip_shard(dataset, shard), sides, keep=clip_read.__contains__,
                                   keep_sidecar=lambda f, ext: ext in read[f]):
            if (dataset, sample["__key__"]) in self.selected:
                sample["__dataset__"] = dataset
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
        cached = p.latents == "cached"  # the latent cache: no pixels but stage 2's window (the aux losses' ground truth)
        needed = [] if cached and self.stage == "stage1" else [*idx["frame_index"].tolist()]
        if not cached:
            needed += [*idx["motion_index"].tolist(), int(idx["reference_index"])]
        try:
            decoded = {} if not needed else video.decode(needed, p.size) if video is not None else \
                decode_frames(clip["mp4"], needed, p.size, rgb=False)
        except ValueError:
            try:
                decoded = decode_frames(clip["mp4"], needed, p.size, rgb=False)
            except ValueError as e:
                raise ValueError(f"clip {dataset}/{key} ({clip['__shard__']}): {e}") from e
        out: dict[str, Any] = {"dataset": dataset, "key": key, **{k: torch.from_numpy(np.asarray(v)) for k, v in idx.items()}}
        m = p.motion_frames
        if not cached:
            out["reference"] = to_tensor([decoded[int(idx["reference_index"])]], bgr=True, dtype=p.pixels)[0]
            out["motion_frames"] = to_tensor([decoded[i] for i in idx["motion_index"].tolist()], bgr=True, dtype=p.pixels) if m \
                else torch.zeros(0, 3, p.size, p.size, dtype=getattr(torch, p.pixels))
        window = to_tensor([decoded[i] for i in idx["frame_index"].tolist()], bgr=True, dtype=p.pixels) if needed else None
        if self.stage == "stage1":
            if window is not None:
                out["target"] = window[0]
        else:
            out["frames"] = window
            out["landmarks"] = self._landmarks(clip, frames, idx["frame_index"])
            if p.raw_audio:
                out["audio"] = self._audio(clip, int(idx["frame_index"][0]), p.target_frames)
        where = (dataset, key, self.stage)
        for feature in self.sample_features[dataset]:
            fill(out, clip[feature.name], feature, idx, frames, p, where)
        return out

    def _audio(self, clip: dict[str, Any], start: int, count: int) -> torch.Tensor:
        """The 16 kHz samples of frames ``start .. start+count-1`` (``count x rate / fps``, zero-padded past the
        end of the wav, which ingest cut to the clip's length): decoded once per clip."""
        if "__audio__" not in clip:
            dataset, key = clip["__dataset__"], clip["__key__"]
            if "wav" not in clip:
                raise MissingFeatureError(f"clip {dataset}/{key}: no {key}.wav in its clip shard (data.raw_audio needs it)")
            wav, rate = sf.read(io.BytesIO(clip["wav"]), dtype="float32", always_2d=True)
            fps = json.loads(clip["json"]).get("meta", {}).get("encode", {}).get("fps") or 25
            if rate % fps:
                raise ValueError(f"clip {dataset}/{key}: {rate} Hz audio is not a whole number of samples per frame at {fps} fps")
            clip["__audio__"] = (wav.mean(axis=1), rate // fps)
        wav, per_frame = clip["__audio__"]
        out = np.zeros(count * per_frame, np.float32)
        piece = wav[start * per_frame:(start + count) * per_frame]
        out[:len(piece)] = piece
        return torch.from_numpy(out)

    def _landmarks(self, clip: dict[str, Any], frames: int, index: np.ndarray) -> torch.Tensor:
        """Landmark targets of the window in output pixels (the clip shard's ``landmarks.npy``, scaled
        from the encoded width to ``size``)."""
        dataset, key, name = clip["__dataset__"], clip["__key__"], LANDMARKS.name
        if name not in clip:
            raise MissingFeatureError(f"clip {dataset}/{key}: no {key}.{name} in its clip shard; stage 2 needs the "
                                      f"landmark targets (ingest with steps.face.enabled: true)")
        lm = np.load(io.BytesIO(clip[name]))
        if lm.shape[0] != frames:
            raise MissingFeatureError(f"clip {dataset}/{key}: {name} has {lm.shape[0]} rows, the clip {frames} frames")
        side = json.loads(clip["json"]).get("meta", {}).get("encode", {}).get("width") or self.p.size
        return torch.from_numpy(lm[index].astype(np.float32) * (self.p.size / float(side)))
