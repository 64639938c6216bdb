"""Feature sidecars in training samples, driven by their writers' declarations (``members.json``).

The extract stage writes each sidecar folder's ``members.json`` from its extractor's ``MEMBERS``
(:class:`core.shards.Member`). Every declared member with a ``sample`` name fills that entry of a
sample, cut by its ``window``:

    clip    the whole array                          (caption text_states (77, D))
    frames  the rows of the sample's frames          (valence_arousal (T, 2))
    audio   the rows of the sample's audio window    (audio_embed (T + 2c, L, H))
    mean    the mean of the frames' rows             (text_emotion (C_t,), speech_emotion (C_ser,))

then ``columns`` (keep the first N columns of the stored array) and float32. The member filling
``data.reference_image_embed`` (``clip_image``) also gives the reference frame's row as
``reference_image_embed`` (the reference image's CLIP embedding, :mod:`model.image_proj`); the latent
cache's ``latents`` member also gives ``motion_latents`` (M, C, h, w) and ``reference_latents`` (C, h, w). A new per-frame
feature in training samples therefore needs only an extractor declaring ``MEMBERS`` and its name in
``data.<stage>_features``. Declarations are read once per (dataset, feature) when a dataset opens.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from core.shards import Member, ShardFormatError, ShardLayout, read_members

from .params import DataParams
from .windows import member_rows

#: Sample entries the loader fills itself; a declared member may not claim them.
BUILTIN_ENTRIES = frozenset({
    "dataset", "key", "worker", "position", "frame_index", "motion_index", "reference_index", "audio_index",
    "reference", "motion_frames", "target", "frames", "landmarks", "reference_image_embed", "motion_latents",
    "reference_latents",
})
#: The latent cache's sample entry (``pipeline/features/latents.py``); its motion and reference rows are cut too.
LATENTS = "latents"


class MissingFeatureError(RuntimeError):
    """A configured feature has no usable data for a selected clip (or no sidecar at all)."""


@dataclass(frozen=True)
class SampleFeature:
    """One configured feature of one dataset: the declared members that fill sample entries."""

    name: str
    members: tuple[Member, ...]

    @property
    def read(self) -> frozenset[str]:
        """The sidecar members a sample needs (the others are skipped unread)."""
        return frozenset({"json", *(m.name for m in self.members)})

    def signature(self) -> tuple:
        return tuple((m.sample, m.window, m.columns) for m in self.members)


def resolve(layout: ShardLayout, datasets: Iterable[str], features: list[str], stage: str) -> dict[str, tuple[SampleFeature, ...]]:
    """``{dataset: (SampleFeature, ...)}`` of the configured ``features``, from each sidecar's
    ``members.json``; a :class:`MissingFeatureError` naming ``data.<stage>_features`` and the fix for
    a feature without a (complete) sidecar or without a member that fills a sample entry."""
    key = f"data.{stage}_features"
    out: dict[str, tuple[SampleFeature, ...]] = {}
    first: dict[str, tuple[str, tuple]] = {}
    for dataset in sorted(set(datasets)):
        present = layout.sidecars(dataset)
        resolved = []
        for feature in features:
            folder = layout.feature(feature, dataset)
            if feature not in present:
                raise MissingFeatureError(
                    f"feature {feature} has no sidecar for dataset {dataset} ({folder}; sidecars of {dataset}: "
                    f"{', '.join(present) or 'none'}): run `dvc repro extract@{feature}-{dataset}` or remove {feature} "
                    f"from {key}")
            try:
                declared = read_members(folder)
            except ShardFormatError as e:
                raise MissingFeatureError(f"feature {feature} of dataset {dataset} ({key}): {e}") from None
            members = tuple(m for m in declared if m.sample)
            if not members:
                raise MissingFeatureError(
                    f"feature {feature} ({key}) fills no sample entry: no member of {folder}/members.json has a "
                    f"'sample' ({', '.join(m.name for m in declared) or 'no members'}); remove it from {key}")
            resolved.append(SampleFeature(feature, members))
        _check_entries(resolved, dataset, key)
        for f in resolved:
            seen = first.setdefault(f.name, (dataset, f.signature()))
            if seen[1] != f.signature():
                raise MissingFeatureError(
                    f"feature {f.name}: the sidecars of {seen[0]} and {dataset} declare different sample entries "
                    f"({seen[1]} vs {f.signature()}); re-run `dvc repro extract@{f.name}-{seen[0]}` and "
                    f"`dvc repro extract@{f.name}-{dataset}` with the same extractor")
        out[dataset] = tuple(resolved)
    return out


def _check_entries(features: list[SampleFeature], dataset: str, key: str) -> None:
    owner: dict[str, str] = {}
    for f in features:
        for m in f.members:
            if m.sample in BUILTIN_ENTRIES:
                raise MissingFeatureError(f"feature {f.name} of {dataset} declares {m.name} as sample entry {m.sample!r}, "
                                          f"which the loader fills itself; rename it in its extractor's MEMBERS")
            if m.sample in owner:
                raise MissingFeatureError(f"features {owner[m.sample]} and {f.name} of {dataset} both fill sample entry "
                                          f"{m.sample!r}; list only one of them in {key}")
            owner[m.sample] = f.name


def fill(out: dict[str, Any], side: dict[str, Any], feature: SampleFeature, idx: dict[str, np.ndarray], frames: int,
         p: DataParams, where: tuple[str, str, str]) -> None:
    """Put the sample entries of one feature's sidecar sample ``side`` into ``out``.

    ``where`` = (dataset, key, stage) for the messages."""
    dataset, key, stage = where
    body = json.loads(side["json"])
    missing = next((m.name for m in feature.members if m.name not in side), None)
    if body.get("status") != "ok" or missing is not None:
        status = body.get("status", "unknown")
        why = f"{status} ({body.get('reason')})" if body.get("reason") else status
        member = missing or feature.members[0].name
        raise MissingFeatureError(
            f"clip {dataset}/{key}: feature {feature.name} is {why}, no {key}.{member} in its sidecar. Fix: add "
            f"{feature.name} to select.required_features (select then drops such clips), remove it from "
            f"data.{stage}_features, or re-run `dvc repro extract@{feature.name}-{dataset}`")
    for member in feature.members:
        if member.sample == LATENTS and p.latents != "cached":
            continue  # the latent cache is read with data.latents: cached only
        array = np.load(io.BytesIO(side[member.name]))
        if member.per_frame and array.shape[0] != frames:
            raise MissingFeatureError(f"clip {dataset}/{key}: {feature.name} {member.name} has {array.shape[0]} rows, the "
                                      f"clip {frames} frames (re-run `dvc repro extract@{feature.name}-{dataset}`)")
        out[member.sample] = cut(member, array, member_rows(member, idx, frames, p))
        if member.sample == LATENTS and member.per_frame and "reference_index" in idx:  # the latent cache (data.latents)
            whole = replace(member, window="frames")
            out["motion_latents"] = cut(whole, array, np.asarray(idx["motion_index"], dtype=np.int64))
            out["reference_latents"] = cut(whole, array, np.asarray([int(idx["reference_index"])]))[0]
        if member.sample == p.reference_image_embed and member.per_frame and "reference_index" in idx:
            row = replace(member, window="frames")  # one row, never averaged
            out["reference_image_embed"] = cut(row, array, np.asarray([int(idx["reference_index"])]))[0]


def cut(member: Member, array: np.ndarray, rows: np.ndarray | None) -> torch.Tensor:
    """A member's array cut for one sample: ``rows`` (None: all), ``columns``, the mean for ``window:
    mean``; float32 (one copy at most besides the row gather)."""
    cols = slice(None) if member.columns is None else slice(0, member.columns)
    if rows is None:
        part = array if member.columns is None else array[:, cols]
    else:
        part = array[rows] if member.columns is None else array[rows, cols]
        if member.window == "mean":
            part = part.mean(0)
    part = np.asarray(part, dtype=np.float32)  # no copy when the gather already gave float32
    return torch.from_numpy(part if part.flags.c_contiguous else np.ascontiguousarray(part))
