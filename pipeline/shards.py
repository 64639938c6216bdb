"""WebDataset shards, their Parquet manifests and feature sidecars (DESIGN 3.4).

Clip shards: ``shards/clips/<dataset>/clips-000000.tar`` holding ``<key>.json``, ``<key>.mp4``,
``<key>.wav`` and any other file a step attached to the clip (``<key>.landmarks.npy``) per clip, clips sorted by key, a new shard once ``max_bytes`` is reached. Beside
them ``manifest.parquet`` (one row per clip: key, shard, timing, format, scores) and
``rejects.parquet`` (one row per rejected source or clip: source, key, step, reason, message).

Feature sidecars: ``shards/features/<feature>/<dataset>/`` with the *same shard names and key
order* as the clip shards (:func:`write_sidecars`), so a loader zips them by position and a new
feature never rewrites the video tars.

Tars are byte-deterministic: fixed member order, zero mtimes/uids, no user names. The whole output
folder is built beside the target and swapped in at the end, so readers never see a half-written
set and a killed run leaves the previous one intact.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.clip import Clip, canonical_json

MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"

REJECT_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("source", pa.string()), ("key", pa.string()), ("step", pa.string()),
    ("reason", pa.string()), ("message", pa.string()),
])


@dataclass(frozen=True)
class ShardParams:
    """``shards`` section of params.yaml."""

    max_bytes: int = 300_000_000  # a new tar starts once this many bytes are written
    max_count: int = 10_000  # ... or this many clips
    root: str = "shards"


@dataclass(frozen=True)
class Reject:
    dataset: str
    source: str
    key: str
    step: str
    reason: str
    message: str


# -- writing --------------------------------------------------------------------------------------
def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, 0, 0o644, 0, 0, "", ""
    return ti


class _TarSet:
    """Writes ``<prefix>-NNNNNN.tar`` files, rolling over at a size or count limit."""

    def __init__(self, folder: Path, prefix: str, max_bytes: int, max_count: int):
        self.folder, self.prefix, self.max_bytes, self.max_count = folder, prefix, max_bytes, max_count
        self.index, self.tar, self.bytes, self.count = -1, None, 0, 0
        self.names: list[str] = []

    def _roll(self) -> None:
        self.close()
        self.index += 1
        name = f"{self.prefix}-{self.index:06d}.tar"
        self.names.append(name)
        self.tar = tarfile.open(self.folder / name, "w", format=tarfile.GNU_FORMAT)
        self.bytes = self.count = 0

    def add(self, key: str, members: Sequence[tuple[str, bytes]], new_shard: bool | None = None) -> str:
        """Add one sample; ``new_shard`` forces (True) or forbids (False) starting a new tar."""
        size = sum(len(b) for _, b in members)
        if new_shard is None:
            new_shard = self.tar is None or (self.count > 0 and (self.bytes + size > self.max_bytes or self.count >= self.max_count))
        if new_shard or self.tar is None:
            self._roll()
        for ext, data in members:
            self.tar.addfile(_tarinfo(f"{key}.{ext}", len(data)), io.BytesIO(data))  # type: ignore[union-attr]
        self.bytes += size
        self.count += 1
        return self.names[-1]

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None


def clip_json(clip: Clip) -> dict[str, Any]:
    """The ``json`` member of a clip sample: everything but local file paths."""
    d = clip.to_json(include_files=False)
    d["file_hashes"] = dict(sorted(clip.file_hashes.items()))
    enc = clip.meta.get("encode", {})
    d["fps"] = enc.get("fps")
    d["frames"] = enc.get("frames")
    d["sample_rate"] = enc.get("sample_rate")
    return d


def manifest_row(clip: Clip, shard: str) -> dict[str, Any]:
    enc, probe, src = clip.meta.get("encode", {}), clip.meta.get("probe", {}), clip.meta.get("source", {})
    row = {
        "key": clip.key, "shard": shard, "dataset": clip.dataset, "source": clip.source_rel,
        "source_sha256": clip.source_hash, "speaker": str(src.get("speaker") or clip.source_rel),
        "start": float(clip.start), "duration": float(clip.duration or 0.0),
        "frames": int(enc.get("frames", 0)), "fps": int(enc.get("fps", 0)), "sample_rate": int(enc.get("sample_rate", 0)),
        "width": int(enc.get("width", 0)), "height": int(enc.get("height", 0)),
        "source_fps": float(probe.get("avg_fps", 0.0)), "source_sample_rate": int(probe.get("audio_sample_rate", 0)),
        "source_meta": canonical_json(src),
        "status": "ok",
    }
    for name, value in sorted(clip.scores.items()):
        row[f"score_{name}"] = float(value)
    return row


class AtomicDir:
    """Build a folder beside ``target`` and swap it in on success (context manager)."""

    def __init__(self, target: Path):
        self.target = Path(target)
        self.tmp = self.target.parent / f".{self.target.name}.tmp-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Path:
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
        if self.target.exists():
            os.rename(self.target, old)
        os.rename(self.tmp, self.target)
        shutil.rmtree(old, ignore_errors=True)


def write_clip_shards(folder: Path, clips: Iterable[Clip], rejects: Iterable[Reject], params: ShardParams) -> pa.Table:
    """Write the clip shards, manifest and rejects of one dataset into ``folder`` (replaced atomically)."""
    clips = sorted(clips, key=lambda c: c.key)
    keys = [c.key for c in clips]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate clip key {dup}: two sources map to the same key")
    rows = []
    with AtomicDir(folder) as tmp:
        tars = _TarSet(tmp, "clips", params.max_bytes, params.max_count)
        for clip in clips:
            members = [
                ("json", canonical_json(clip_json(clip)).encode()),
                ("mp4", Path(clip.files["mp4"]).read_bytes()),
                ("wav", Path(clip.files["wav"]).read_bytes()),
            ]
            # Any other file a step attached (e.g. "landmarks.npy") goes in as <key>.<name>, in name order.
            members += [(name, Path(path).read_bytes()) for name, path in sorted(clip.files.items()) if name not in ("mp4", "wav")]
            rows.append(manifest_row(clip, tars.add(clip.key, members)))
        tars.close()
        table = _table(rows)
        pq.write_table(table, tmp / MANIFEST)
        _write_rejects(tmp / REJECTS, rejects)
    return table


def _write_rejects(path: Path, rejects: Iterable[Reject]) -> None:
    rows = sorted((dict(r.__dict__) for r in rejects), key=lambda r: (r["source"], r["key"], r["step"]))
    pq.write_table(pa.Table.from_pylist(rows, schema=REJECT_SCHEMA), path)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    if not rows:
        return pa.table({"key": pa.array([], pa.string()), "shard": pa.array([], pa.string())})
    base = list(dict.fromkeys(k for r in rows for k in r if not k.startswith("score_")))
    scores = sorted({k for r in rows for k in r if k.startswith("score_")})
    return pa.Table.from_pylist([{c: r.get(c) for c in base + scores} for r in rows])


def write_sidecars(folder: Path, clip_dir: Path, samples: dict[str, Sequence[tuple[str, bytes]]],
                   extra_rows: dict[str, dict[str, Any]] | None = None, rejects: Iterable[Reject] = ()) -> pa.Table:
    """Write a feature's sidecar shards aligned with the clip shards in ``clip_dir``.

    ``samples[key]`` holds the members (``(ext, bytes)``) of each clip; every clip of the clip
    manifest must be present. Each sidecar tar has the same name and key order as its clip tar.
    """
    manifest = pq.read_table(clip_dir / MANIFEST).to_pylist()
    missing = [r["key"] for r in manifest if r["key"] not in samples]
    if missing:
        raise KeyError(f"sidecar for {folder} lacks {len(missing)} clip(s) of {clip_dir}, e.g. {missing[0]}")
    rows = []
    with AtomicDir(folder) as tmp:
        tars = _TarSet(tmp, "clips", 1 << 62, 1 << 62)
        current = None
        for r in manifest:
            tars.add(r["key"], samples[r["key"]], new_shard=r["shard"] != current)
            current = r["shard"]
            rows.append({"key": r["key"], "shard": r["shard"], **(extra_rows or {}).get(r["key"], {})})
        tars.close()
        table = _table(rows)
        pq.write_table(table, tmp / MANIFEST)
        _write_rejects(tmp / REJECTS, rejects)
    return table


# -- reading --------------------------------------------------------------------------------------
def read_manifest(folder: Path) -> pa.Table:
    return pq.read_table(Path(folder) / MANIFEST)


def read_rejects(folder: Path) -> pa.Table:
    return pq.read_table(Path(folder) / REJECTS)


def iter_samples(folder: Path) -> Iterator[dict[str, Any]]:
    """Samples of a shard set in order: ``{"__key__": key, "<ext>": bytes, ...}`` (for tests and tools)."""
    for tar_path in sorted(Path(folder).glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            sample: dict[str, Any] = {}
            for member in tar:
                key, ext = member.name.split(".", 1)
                if sample and sample["__key__"] != key:
                    yield sample
                    sample = {}
                sample["__key__"] = key
                sample["__shard__"] = tar_path.name
                sample[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
            if sample:
                yield sample


def load_json(data: bytes) -> dict[str, Any]:
    return json.loads(data)
