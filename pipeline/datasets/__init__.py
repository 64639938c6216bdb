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
the layout knows it) is what ``select`` uses to keep splits identity-disjoint (with
``meta["speaker_scope"] = "global"`` the id names one person across datasets: ``table``'s
``global_speaker``). A ``SourceVideo`` with a ``range`` is that part of the file only: ingest seeks
to it (``table`` and ``vfhq`` list one per table row or clip).
"""

from __future__ import annotations

import dataclasses
import importlib
import stat
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
    # (start, end) seconds on the source's video timeline: ingest cuts (and decodes) only this part;
    # one source may be listed once per range (metadata tables: TalkVid, VFHQ, CelebV-HQ)
    range: tuple[float, float] | None = None
    # (reason, message) when the listed path is not usable (``not_a_file``, ``dangling_symlink``,
    # ``outside_raw_dir``): set by :func:`list_sources`, ingest turns it into a rejects row
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class DatasetParams:
    """The keys every ``datasets.<name>`` entry has; the rest go to the adapter's ``Options``."""

    adapter: str
    raw_dir: str
    test_only: bool = False  # select puts every clip of this dataset in the test split
    # false: a source that is a symlink leading out of raw_dir is rejected (outside_raw_dir), not read
    follow_outside_symlinks: bool = False


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
                f"(with Options and list_sources) or use one of: folder, sample, hdtf, mead, table, vfhq"
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
    ids = [(s.rel, s.range) for s in sources]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"dataset {name}: adapter {common.adapter} listed a source (with the same time range) twice")
    sources = [_checked(s, raw_dir, common.follow_outside_symlinks, f"datasets.{name}") for s in sources]
    return sorted(sources, key=lambda s: (s.rel, s.range or (-1.0, -1.0)))


def printable(rel: str) -> str:
    """``rel`` as valid UTF-8 text: bytes of a non-UTF-8 file name (kept by Python as surrogates) are
    written as ``\\xNN``, so the name can go into keys, JSON and parquet (the path itself is kept)."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _checked(src: SourceVideo, raw_dir: Path, follow: bool, key: str) -> SourceVideo:
    """``src`` with a printable ``rel`` and its ``problem`` set when the path is not a usable file."""
    rel = printable(src.rel)
    problem = None
    try:
        st = src.path.lstat()
    except OSError:  # not there at all: ingest's hashing says so (missing_file)
        st = None
    if st is not None:
        target = src.path.resolve()
        if stat.S_ISLNK(st.st_mode) and not target.exists():
            problem = ("dangling_symlink", f"{rel}: a symlink to {target}, which does not exist")
        elif not target.is_file():
            problem = ("not_a_file", f"{rel}: not a regular file ({_kind(target)})")
        elif not follow and not target.is_relative_to(raw_dir.resolve()):
            problem = ("outside_raw_dir", f"{rel}: a symlink leading out of raw_dir, to {target}; set {key}."
                       f"follow_outside_symlinks: true to read it")
    return dataclasses.replace(src, rel=rel, problem=problem) if (problem or rel != src.rel) else src


def _kind(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError:
        return "unreadable"
    return ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")


def walk_videos(raw_dir: Path, suffixes: tuple[str, ...] = VIDEO_SUFFIXES) -> list[Path]:
    """Every entry with a video suffix under ``raw_dir`` (recursively, hidden entries skipped), sorted.

    Not only regular files: a dangling symlink, a FIFO or a folder named ``x.mp4`` is listed too, so
    :func:`list_sources` can give it a reason (nothing disappears without a rejects row)."""
    out = []
    for p in raw_dir.rglob("*"):
        rel = p.relative_to(raw_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in suffixes:
            out.append(p)
    return sorted(out)
