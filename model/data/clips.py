"""Whole clips of a split, for inference and evaluation: the clip's frames, audio, landmarks and its
condition features, cut into consecutive generation windows exactly as the training loader cuts them.

``ClipWindows`` draws random windows for training; generation walks a clip from its first frame in
consecutive windows of ``data.target_frames`` frames (the paper's 14), each conditioned like a stage-2
sample. :meth:`WholeClip.window` builds that sample with the loader's own code
(:func:`model.data.features.fill` on the sidecars' ``members.json``), so a generation window holds the
same entries, cut the same way, as a training window:

    audio_embed      (T + 2c, L, H)   the window's audio rows, clamped at the clip's ends
    text_emotion     (C_t,)           mean over the window's frames
    speech_emotion   (C_ser,)
    valence_arousal  (T, 2)
    text_states      (77, D)          the caption's, whole clip
    ...              any other declared entry (e.g. ``reference_image_embed`` when its feature is listed)

A window past the clip's last frame (the last window of a clip whose length is not a multiple of T, or
a clip shorter than T) repeats the last frame's rows, as ``audio_rows`` clamps at the ends; the frames
generated there are dropped by the caller. Only features whose sidecar exists for the dataset are
read (targets of the training losses, e.g. ``sync``, may be absent for a prepared input).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.shards import ShardLayout, zip_sidecars

from .features import MissingFeatureError, SampleFeature, fill, resolve
from .params import DataParams

#: the sample entries the conditions are built from (:mod:`model.conditioning`)
CONDITION_ENTRIES = frozenset({"audio_embed", "text_emotion", "speech_emotion", "valence_arousal", "text_states",
                               "reference_image_embed"})


@dataclass
class WholeClip:
    """One selected clip: its shard members (bytes) and its condition sidecars (see the module docstring)."""

    dataset: str
    key: str
    frames: int
    members: dict[str, Any]
    sidecars: dict[str, dict[str, Any]]
    features: tuple[SampleFeature, ...]
    params: DataParams
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        meta = json.loads(self.members["json"]).get("meta", {}).get("encode", {})
        return float(meta.get("fps") or 25)

    def window(self, start: int, count: int | None = None) -> dict[str, Any]:
        """The stage-2-like sample of frames ``start .. start + count - 1`` (``count``: ``data.target_frames``),
        indices clamped to the clip; no pixels (the reference and motion frames are the caller's)."""
        p = self.params
        count = p.target_frames if count is None else count
        last = self.frames - 1
        frame_index = np.clip(np.arange(start, start + count), 0, last)
        c = p.audio_context
        idx = {"frame_index": frame_index, "motion_index": np.clip(np.arange(start - p.motion_frames, start), 0, last),
               "reference_index": np.int64(0), "audio_index": np.clip(np.arange(start - c, start + count + c), 0, last)}
        out: dict[str, Any] = {"dataset": self.dataset, "key": self.key}
        for feature in self.features:
            fill(out, self.sidecars[feature.name], feature, idx, self.frames, p, (self.dataset, self.key, "stage2"))
        return out

    def decode_frames(self, size: int, count: int | None = None) -> np.ndarray:
        """``(N, size, size, 3)`` uint8 RGB frames of the clip (all, or the first ``count``)."""
        from core.mp4 import decode_frames

        n = self.frames if count is None else min(count, self.frames)
        frames = decode_frames(self.members["mp4"], list(range(n)), size, rgb=True)
        return np.stack([np.asarray(frames[i]) for i in range(n)])

    def audio(self) -> tuple[np.ndarray, int]:
        """The clip's mono samples and rate (``{key}.wav``)."""
        import soundfile as sf

        if "wav" not in self.members:
            raise MissingFeatureError(f"clip {self.dataset}/{self.key}: no {self.key}.wav in its clip shard")
        wav, rate = sf.read(io.BytesIO(self.members["wav"]), dtype="float32", always_2d=True)
        return wav.mean(axis=1), int(rate)

    def write_wav(self, folder: Path | str | None = None, frames: int | None = None) -> Path:
        """The clip's audio as ``<folder>/<key>.wav`` (a temporary folder by default), cut to its first ``frames``
        frames when given (16-bit PCM as ingest writes it)."""
        import soundfile as sf

        folder = Path(folder or tempfile.mkdtemp(prefix="clip-audio-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.key}.wav"
        if frames is None:
            path.write_bytes(self.members["wav"])
            return path
        wav, rate = self.audio()
        sf.write(path, wav[:int(round(frames / self.fps * rate))], rate, subtype="PCM_16")
        return path


class ClipFrames:
    """A clip generated for ``frames`` frames: fewer (the first N, ``evaluate.max_frames``) or more (a driving
    audio longer than the clip's last whole frame: the last rows repeat, as past the end of a window)."""

    def __init__(self, clip: WholeClip, frames: int):
        self.clip, self.frames, self.key = clip, int(frames), clip.key

    def window(self, start: int, count: int | None = None) -> dict[str, Any]:
        return self.clip.window(start, count)


def condition_features(layout: ShardLayout, dataset: str, params: DataParams) -> tuple[SampleFeature, ...]:
    """The features of ``data.stage2_features`` (then ``stage1_features``) that fill a condition entry and
    whose sidecar exists for ``dataset``; an error naming the missing one when the audio condition lacks."""
    present = layout.sidecars(dataset)
    wanted = [f for f in dict.fromkeys([*params.stage2_features, *params.stage1_features]) if f in present]
    resolved = resolve(layout, [dataset], wanted, "stage2")[dataset]
    wanted_entries = CONDITION_ENTRIES | {params.reference_image_embed}  # its reference row is the CLIP image condition
    keep = tuple(f for f in resolved if any(m.sample in wanted_entries for m in f.members))
    entries = {m.sample for f in keep for m in f.members}
    if "audio_embed" not in entries:
        raise MissingFeatureError(f"dataset {dataset} in {layout.root}: no sidecar fills audio_embed (the audio condition); "
                                  f"run `dvc repro extract@audio_embed-{dataset}` and list it in data.stage2_features")
    return keep


def iter_clips(params: DataParams, split: str, shard_root: Path | str = "shards", keys: set[str] | None = None,
               limit: int | None = None) -> Iterator[WholeClip]:
    """The clips of ``split`` (sorted by dataset, shard and key order in the tar), optionally only ``keys``
    (``dataset/key`` or ``key``) and at most ``limit`` of them."""
    from .dataset import read_split

    layout = ShardLayout(Path(shard_root))
    entries = read_split(layout, split)
    if keys is not None:
        entries = [e for e in entries if e["key"] in keys or f"{e['dataset']}/{e['key']}" in keys]
    selected = {(e["dataset"], e["key"]): e for e in entries}
    done = 0
    for dataset, shard in sorted({(e["dataset"], e["shard"]) for e in entries}):
        features = condition_features(layout, dataset, params)
        sides = {f.name: layout.sidecar_shard(f.name, dataset, shard) for f in features}
        read = {f.name: f.read for f in features}
        for sample in zip_sidecars(layout.clip_shard(dataset, shard), sides, keep_sidecar=lambda f, ext: ext in read[f]):
            entry = selected.get((dataset, sample["__key__"]))
            if entry is None:
                continue
            members = {k: v for k, v in sample.items() if not k.startswith("__") and k not in sides}
            yield WholeClip(dataset=dataset, key=sample["__key__"], frames=int(entry["frames"]), members=members,
                            sidecars={f: sample[f] for f in sides}, features=features, params=params, entry=entry)
            done += 1
            if limit is not None and done >= limit:
                return


def split_entries(split: str, shard_root: Path | str = "shards") -> list[dict[str, Any]]:
    """The entries of ``split`` in the order :func:`iter_clips` yields them."""
    from .dataset import read_split

    entries = read_split(ShardLayout(Path(shard_root)), split)
    order: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in entries:
        order.setdefault((e["dataset"], e["shard"]), []).append(e)
    return [e for unit in sorted(order) for e in order[unit]]
