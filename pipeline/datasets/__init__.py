"""Dataset adapters: one small module per published layout (DESIGN 1, issue "adding a dataset").

A dataset is one entry in ``params.yaml``::

    datasets:
      mead:
        adapter: mead            # the module pipeline/datasets/mead.py
        raw_dir: /data/MEAD      # where the raw videos are
        views: [front]           # any further keys are that adapter's own Options

An adapter module defines a frozen ``Options`` dataclass (its extra keys; an unknown key is an
error) and ``list_sources(raw_dir: Path, options: Options) -> list[SourceVideo]``: the raw videos
in a deterministic order, each with the metadata parsed from its path. ``meta["speaker"]`` (when
the layout knows it) is what ``select`` uses to keep splits identity-disjoint.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from core import params as params_mod

#: File name suffixes treated as videos by the adapters (lower case).
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".ts")


@dataclass(frozen=True)
class SourceVideo:
    """One raw video of a dataset."""

    path: Path  # absolute path
    rel: str  # posix path relative to raw_dir: the stable name used in clip keys
    meta: dict[str, Any] = field(default_factory=dict)  # adapter metadata (speaker, emotion, ...)


@dataclass(frozen=True)
class DatasetParams:
    """The keys every ``datasets.<name>`` entry has; the rest go to the adapter's ``Options``."""

    adapter: str
    raw_dir: str
    test_only: bool = False  # select puts every clip of this dataset in the test split


COMMON_KEYS = {f.name for f in dataclasses.fields(DatasetParams)}


class DatasetError(ValueError):
    """A dataset entry or its raw folder is not usable."""


def load_adapter(name: str) -> ModuleType:
    try:
        module = importlib.import_module(f"pipeline.datasets.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"pipeline.datasets.{name}":
            raise DatasetError(
                f"unknown dataset adapter '{name}': add pipeline/datasets/{name}.py "
                f"(with Options and list_sources) or use one of: folder, sample, hdtf, mead"
            ) from None
        raise
    for attr in ("Options", "list_sources"):
        if not hasattr(module, attr):
            raise DatasetError(f"pipeline/datasets/{name}.py must define {attr}")
    return module


def parse(name: str, raw: dict[str, Any], where: str = "params.yaml") -> tuple[DatasetParams, Any]:
    """Split a ``datasets.<name>`` entry into the common params and the adapter's Options."""
    key = f"{where}: datasets.{name}"
    if not isinstance(raw, dict):
        raise params_mod.ParamsError(f"{key}: expected a mapping with adapter and raw_dir")
    common = params_mod.from_dict(DatasetParams, {k: v for k, v in raw.items() if k in COMMON_KEYS}, key)
    module = load_adapter(common.adapter)
    options = params_mod.from_dict(module.Options, {k: v for k, v in raw.items() if k not in COMMON_KEYS}, key)
    return common, options


def list_sources(name: str, raw: dict[str, Any], root: Path = Path("."), where: str = "params.yaml") -> list[SourceVideo]:
    """The raw videos of dataset ``name`` (its params entry ``raw``), sorted by ``rel``."""
    common, options = parse(name, raw, where)
    raw_dir = Path(common.raw_dir)
    if not raw_dir.is_absolute():
        raw_dir = (root / raw_dir).resolve()
    if not raw_dir.is_dir():
        raise DatasetError(f"{where}: datasets.{name}.raw_dir: folder {raw_dir} does not exist (fix the path or create it)")
    sources = load_adapter(common.adapter).list_sources(raw_dir, options)
    rels = [s.rel for s in sources]
    if len(set(rels)) != len(rels):
        raise DatasetError(f"dataset {name}: adapter {common.adapter} listed a source twice")
    return sorted(sources, key=lambda s: s.rel)


def walk_videos(raw_dir: Path, suffixes: tuple[str, ...] = VIDEO_SUFFIXES) -> list[Path]:
    """Every video file under ``raw_dir`` (recursively, hidden entries skipped), sorted."""
    out = []
    for p in raw_dir.rglob("*"):
        rel = p.relative_to(raw_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_file() and p.suffix.lower() in suffixes:
            out.append(p)
    return sorted(out)
