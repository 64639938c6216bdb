"""Training batches: the A2M loader mode, a tensor-only collate, and a resumable endless batch stream.

- :class:`MotionWindows`: the A2M's samples (paper 3.5). Only the M motion frames and the reference
  are decoded (not the 14 + 2 frames of a stage-2 window), with the ``audio_embed`` rows of the
  motion frames themselves::

      reference      (3, S, S)      a random keyframe (``data.stage2_reference``) of the clip
      motion_frames  (M, 3, S, S)   frames s-M .. s-1, s uniform in [M, F]
      audio_embed    (M, L, H)      wav2vec2 states of those frames

  The first clip of a generated video has no previous frames. Its motion frames are defined as the
  A2M's output for the reference and the audio of the clip's FIRST frame repeated M times (the
  clamped rows of frames -M .. -1, as every window clamps); with probability
  ``train.a2m.first_clip_probability`` a sample is that case (s = 0: frame 0 repeated M times as
  the target, its audio row repeated), so the A2M is trained for it.
- :func:`collate`: batches without strings (``dataset``/``key`` are dropped), so accelerate's
  ``prepare`` (whose default for an IterableDataset dispatches batches from rank 0 with
  ``broadcast``, which fails on lists of strings) can carry them.
- :class:`Batches`: endless epochs over a per-rank DataLoader with :class:`~model.data.LoaderState`
  fed every batch; its state (positions + the DataLoader worker due next) restores the exact stream.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from core.mp4 import ClipVideo, decode_frames
from model.data import ClipWindows, DataParams, LoaderState
from model.data.features import fill
from model.data.pixels import to_tensor
from model.data.windows import choose_reference


class MotionWindows(ClipWindows):
    """A2M samples (module docstring): ClipWindows reading the clips and the ``audio_embed`` sidecar."""

    def __init__(self, params: DataParams, first_clip_probability: float = 0.0, **kwargs: Any):
        import dataclasses

        super().__init__(dataclasses.replace(params, stage2_features=["audio_embed"], raw_audio=False, latents="pixels"), "stage2",
                         **kwargs)
        self.first_clip_probability = first_clip_probability

    def build(self, clip: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        key, dataset = clip["__key__"], clip["__dataset__"]
        frames, p, m = int(self.selected[(dataset, key)]["frames"]), self.p, self.p.motion_frames
        if "__video__" not in clip:
            try:
                clip["__video__"] = ClipVideo(clip["mp4"])
            except (ValueError, KeyError, IndexError, struct.error):
                clip["__video__"] = None
        video = clip["__video__"]
        first = rng.random() < self.first_clip_probability
        start = 0 if first else int(rng.integers(min(m, frames - 1), frames + 1))
        motion = np.clip(np.arange(start - m, start), 0, frames - 1)
        idx = {"motion_index": motion, "audio_index": motion, "frame_index": motion,
               "reference_index": choose_reference(frames, p, rng, video.keyframes if video is not None else None)}
        needed = sorted({*motion.tolist(), int(idx["reference_index"])})
        try:
            decoded = video.decode(needed, p.size) if video is not None else decode_frames(clip["mp4"], needed, p.size, rgb=False)
        except ValueError:
            decoded = decode_frames(clip["mp4"], needed, p.size, rgb=False)
        out: dict[str, Any] = {"dataset": dataset, "key": key, "first_clip": torch.tensor(first),
                               "motion_index": torch.from_numpy(motion), "reference_index": torch.tensor(idx["reference_index"])}
        out["reference"] = to_tensor([decoded[int(idx["reference_index"])]], bgr=True, dtype=p.pixels)[0]
        out["motion_frames"] = to_tensor([decoded[i] for i in motion.tolist()], bgr=True, dtype=p.pixels)
        for feature in self.sample_features[dataset]:
            fill(out, clip[feature.name], feature, idx, frames, p, (dataset, key, "a2m"))
        return out


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` of the samples' tensors and numbers; strings (dataset, key) are left out."""
    return default_collate([{k: v for k, v in s.items() if not isinstance(v, str)} for s in samples])


def make_dataset(stage: str, data: DataParams, split: str, first_clip_probability: float, rank: int, world: int,
                 shard_root: str = "shards") -> ClipWindows:
    if stage == "a2m":
        return MotionWindows(data, first_clip_probability, split=split, shard_root=shard_root, rank=rank, world_size=world)
    return ClipWindows(data, stage, split=split, shard_root=shard_root, rank=rank, world_size=world)


class Batches:
    """Endless batches of one rank: epochs of a DataLoader over ``dataset``, resumable.

    The DataLoader hands out its workers' batches round-robin from worker 0; a resumed run's next
    batch may be due from another worker, so batches are re-ordered to the saved turn (each worker's
    own stream is reproduced exactly by ``ClipWindows``' skip)."""

    def __init__(self, dataset: ClipWindows, batch_size: int, num_workers: int, pin_memory: bool = False,
                 state: dict[str, Any] | None = None):
        self.dataset, self.batch_size, self.workers, self.pin = dataset, batch_size, num_workers, pin_memory
        state = state or {"loader": {"epoch": 0, "positions": {}}, "next_worker": 0}
        self.loader_state = LoaderState(int(state["loader"]["epoch"]))
        self.loader_state.positions = {int(k): int(v) for k, v in state["loader"]["positions"].items()}
        self.next_worker = int(state["next_worker"])

    def state_dict(self) -> dict[str, Any]:
        return {"loader": self.loader_state.state_dict(), "next_worker": self.next_worker}

    def _ordered(self, loader: DataLoader) -> Iterator[dict[str, Any]]:
        k, base = max(1, self.workers), self.dataset.rank * self.workers
        pending: dict[int, deque] = {w: deque() for w in range(k)}
        active = list(range(k))
        self.next_worker %= k
        for batch in loader:
            pending[int(batch["worker"][0]) - base if self.workers else 0].append(batch)
            yield from self._release(pending, active, final=False)
        yield from self._release(pending, active, final=True)

    def _release(self, pending: dict[int, deque], active: list[int], final: bool) -> Iterator[dict[str, Any]]:
        """Hand out the due worker's batches in turn. A due worker without a batch while another has two
        waiting has had its turn and is done for this epoch (as is every worker at the loader's end)."""
        while active:
            due = self.next_worker
            after = active[(active.index(due) + 1) % len(active)]
            if pending[due]:
                batch = pending[due].popleft()
                self.loader_state.update(batch)
                self.next_worker = after
                yield batch
            elif final or any(len(q) > 1 for q in pending.values()):
                active.remove(due)
                self.next_worker = after if active else 0
            else:
                return

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            self.dataset.load_state_dict(self.loader_state.state_dict())
            loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.workers, collate_fn=collate,
                                pin_memory=self.pin, drop_last=True)
            count = 0
            for batch in self._ordered(loader):
                count += 1
                yield batch
            if count == 0 and not self.loader_state.positions:
                raise ValueError(f"split {self.dataset.split} gave no batch of {self.batch_size} in an epoch "
                                 f"({len(self.dataset.clips)} clips, {max(1, self.workers)} DataLoader workers per rank): "
                                 f"lower train.batch_size or num_workers, or raise data.samples_per_clip")
            self.loader_state = LoaderState(self.loader_state.epoch + 1)
            self.next_worker = 0


def first_batch(dataset: ClipWindows, global_batch: int, rank: int, batch_size: int) -> dict[str, Any]:
    """The first global batch of ``dataset`` (one process's view), this rank's slice (overfit mode)."""
    batch = next(iter(DataLoader(dataset, batch_size=global_batch, num_workers=0, collate_fn=collate)))
    return {k: v[rank * batch_size:(rank + 1) * batch_size] for k, v in batch.items()}
