"""The shard format, owned here and nowhere else: layout, members, writer and reader (DESIGN 3.4).

Layout (:class:`ShardLayout` names every path; nothing else builds them)::

    <root>/clips/<dataset>/clips-000000.tar ...    clip shards, manifest.parquet, rejects.parquet
    <root>/features/<feature>/<dataset>/           feature sidecars: same tar names and key order,
                                                   manifest.parquet, rejects.parquet, members.json
    <root>/splits/{train,val,test}.jsonl           the selected clips (select), decisions.parquet

Clip shards: ``shards/clips/<dataset>/clips-000000.tar`` holding ``<key>.json``, ``<key>.mp4``,
``<key>.wav`` and any other file a step attached to the clip (``<key>.landmarks.npy``) per clip, clips sorted by key, a new shard once ``max_bytes`` is reached. Beside
them ``manifest.parquet`` (one row per clip: key, shard, timing, format, scores) and
``rejects.parquet`` (one row per rejected source or clip: source, key, step, reason, message).

Feature sidecars: ``shards/features/<feature>/<dataset>/`` with the *same shard names and key
order* as the clip shards (:func:`write_sidecars`), so a reader zips them by key in one pass
(:func:`zip_sidecars`) and a new feature never rewrites the video tars. ``members.json`` holds the
feature's declared members (:class:`Member`: name, dtype, shape, and which training-sample entry
it fills), written by the extract stage from the extractor's declaration; the training loader
reads it instead of keeping its own table.

Shards are untrusted input (they may come from a shared remote): every shard and dataset name is
checked before it becomes a path (:func:`safe_name`), tar members must be regular files named
``<key>.<ext>`` (:func:`member_name`), a published file must match the sha256 of its cache record
(:func:`verified_bytes`), and a sidecar out of step with its clip shard is an error naming both files.

Tars are byte-deterministic: fixed member order, zero mtimes/uids, no user names. The whole output
folder is built beside the target and swapped in at the end, so readers never see a half-written
set and a killed run leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from core.clip import Clip, canonical_json
from core.members import (  # noqa: F401  (the declarations are part of the shard format's interface)
    CLIP_MEMBERS,
    MEMBERS,
    Member,
    ShardFormatError,
    Window,
    read_members,
    write_members,
)
from core.storage import AtomicDir  # noqa: F401  (re-exported: the shard writers' folder swap)

MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"
SPLITS = ("train", "val", "test")

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
    min_free_mb: float = 200.0  # a stage stops before any compute when the shards folder has less free space


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def safe_name(value: str, what: str) -> str:
    """``value`` when it is a single safe path component (a dataset, feature or shard name read from
    params, a split list or a manifest); a :class:`ShardFormatError` naming it otherwise."""
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise ShardFormatError(f"{what} {value!r} is not a plain name (letters, digits, '_', '-', '.'; no '/' or '..')")
    return value


_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_EXT = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


def member_name(name: str, where: Path | str = "") -> tuple[str, str]:
    """``(key, ext)`` of a tar member named ``<key>.<ext>``: the key a slug (letters, digits, ``-``,
    ``_``), the extension dot-separated words (``mp4``, ``landmarks.npy``). Anything else (``/``,
    ``..``, control characters, an absolute name) is a :class:`ShardFormatError`: member names
    become file names when a shard is unpacked, so a crafted one must never become a path."""
    key, _, ext = name.partition(".")
    if not _KEY.match(key) or not _EXT.match(ext):
        raise ShardFormatError(f"{where}: member {name!r} is not named <key>.<ext> (key: letters, digits, '-', '_'; "
                               f"ext: dot-separated words); the shard is damaged or crafted: rebuild it with its stage")
    return key, ext


@dataclass(frozen=True)
class ShardLayout:
    """Every path of the shard tree under ``root`` (``shards.root`` of params.yaml)."""

    root: Path

    @classmethod
    def from_params(cls, params: "ShardParams", project: Path | str = ".") -> "ShardLayout":
        return cls(Path(project) / params.root)

    # -- clip shards --
    @property
    def clips_root(self) -> Path:
        return self.root / "clips"

    def clips(self, dataset: str) -> Path:
        return self.clips_root / safe_name(dataset, "dataset")

    def clip_shard(self, dataset: str, shard: str) -> Path:
        return self.clips(dataset) / safe_name(shard, "shard")

    def datasets(self) -> list[str]:
        """Datasets with clip shards, sorted (folders being written, ``.<name>.tmp-*``, are left out)."""
        if not self.clips_root.is_dir():
            return []
        return sorted(p.name for p in self.clips_root.iterdir() if p.is_dir() and not p.name.startswith("."))

    # -- feature sidecars --
    @property
    def features_root(self) -> Path:
        return self.root / "features"

    def feature(self, feature: str, dataset: str) -> Path:
        return self.features_root / safe_name(feature, "feature") / safe_name(dataset, "dataset")

    def sidecar_shard(self, feature: str, dataset: str, shard: str) -> Path:
        return self.feature(feature, dataset) / safe_name(shard, "shard")

    def sidecars(self, dataset: str) -> dict[str, Path]:
        """``{feature: folder}`` of every complete sidecar (one with a manifest) of ``dataset``, by name."""
        safe_name(dataset, "dataset")
        return {m.parent.parent.name: m.parent for m in sorted(self.features_root.glob(f"*/{dataset}/{MANIFEST}"))
                if not m.parent.parent.name.startswith(".")}

    # -- splits --
    @property
    def splits(self) -> Path:
        return self.root / "splits"

    def split(self, name: str) -> Path:
        return self.splits / f"{safe_name(name, 'split')}.jsonl"

    @property
    def decisions(self) -> Path:
        return self.splits / "decisions.parquet"


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


#: version of a clip sample's ``json`` member (README "Shard format"); 2: named per-frame face fields with units
CLIP_SCHEMA_VERSION = 2
#: units of the json's numbers (``meta.face.pose``/``crop`` columns carry theirs in their names)
CLIP_UNITS = {"start": "s (source video timeline)", "duration": "s", "fps": "frames/s", "frames": "count",
              "sample_rate": "Hz", "meta.face.pose": "degrees", "meta.face.crop": "source pixels"}
_PER_FRAME = {"pose": ("yaw_deg", "pitch_deg", "roll_deg"), "crop": ("cx_px", "cy_px", "side_px")}


def clip_json(clip: Clip) -> dict[str, Any]:
    """The ``json`` member of a clip sample: everything but local file paths, per-frame face arrays
    as named columns (``pose.yaw_deg`` ..., ``crop.cx_px`` ..., ``tracked`` booleans)."""
    d = clip.to_json(include_files=False)
    d["schema_version"], d["units"] = CLIP_SCHEMA_VERSION, CLIP_UNITS
    d["file_hashes"] = dict(sorted(clip.file_hashes.items()))
    enc = clip.meta.get("encode", {})
    d["fps"] = enc.get("fps")
    d["frames"] = enc.get("frames")
    d["sample_rate"] = enc.get("sample_rate")
    face = d["meta"].get("face")
    if isinstance(face, dict):
        face = d["meta"]["face"] = dict(face)
        for name, columns in _PER_FRAME.items():
            if face.get(name) is not None:
                face[name] = {c: [row[i] for row in face[name]] for i, c in enumerate(columns)}
        if face.get("tracked") is not None:
            face["tracked"] = [bool(t) for t in face["tracked"]]
    return d


def clip_from_json(d: dict[str, Any], files: dict[str, str], file_hashes: dict[str, str]) -> Clip:
    """The :class:`Clip` of a clip sample's ``json`` member (:func:`clip_json`; schema 1 or 2), with its
    media at ``files`` (``source`` is the path relative to the dataset's raw_dir: the absolute one is not stored)."""
    meta = d["meta"]
    if d.get("schema_version", 1) >= 2 and isinstance(meta.get("face"), dict):  # back to the steps' per-frame rows
        meta = {**meta, "face": dict(meta["face"])}
        face = meta["face"]
        for name, columns in _PER_FRAME.items():
            if isinstance(face.get(name), dict):
                face[name] = [list(row) for row in zip(*(face[name][c] for c in columns))]
        if face.get("tracked") is not None:
            face["tracked"] = [int(t) for t in face["tracked"]]
    return Clip(key=d["key"], dataset=d["dataset"], source=d["source_rel"], source_rel=d["source_rel"],
                source_hash=d["source_hash"], start=d["start"], duration=d["duration"], meta=meta,
                scores=d["scores"], files=files, file_hashes=file_hashes)


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
            # Any other file a step attached (e.g. "landmarks.npy") goes in as <key>.<name>, in name order.
            names = ["mp4", "wav"] + [n for n in sorted(clip.files) if n not in ("mp4", "wav")]
            members = [("json", canonical_json(clip_json(clip)).encode())] + [(n, verified_bytes(clip, n)) for n in names]
            rows.append(manifest_row(clip, tars.add(clip.key, members)))
        tars.close()
        table = _table(rows)
        pq.write_table(table, tmp / MANIFEST)
        _write_rejects(tmp / REJECTS, rejects)
    return table


def verified_bytes(clip: Clip, name: str) -> bytes:
    """The bytes of ``clip.files[name]``, once their sha256 matches ``clip.file_hashes[name]``: the files
    come from a cache that may be shared, so nothing is published that does not match its record."""
    path = Path(clip.files[name])
    data = path.read_bytes()
    want = clip.file_hashes.get(name, "")  # every cached record has a sha256 per file (pipeline.cache checks it)
    if _SHA256.match(want) and hashlib.sha256(data).hexdigest() != want:
        raise ShardFormatError(f"{path}: the {name} of {clip.key} does not match the sha256 its cache record states "
                               f"({want or 'none'}); the cache was altered or damaged: delete that cache entry (or the "
                               f"cache folder) and re-run")
    return data


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
                   extra_rows: dict[str, dict[str, Any]] | None = None, rejects: Iterable[Reject] = (),
                   members: Sequence[Member] = (), feature: str = "") -> pa.Table:
    """Write a feature's sidecar shards aligned with the clip shards in ``clip_dir``.

    ``samples[key]`` holds the members (``(ext, bytes)``) of each clip; every clip of the clip
    manifest must be present. Each sidecar tar has the same name and key order as its clip tar.
    ``members`` (the feature's declaration, besides ``json``) goes to ``members.json``.
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
        write_members(tmp, feature or Path(folder).parent.name, members)
    return table


# -- reading --------------------------------------------------------------------------------------
def read_manifest(folder: Path) -> pa.Table:
    return pq.read_table(Path(folder) / MANIFEST)


def read_rejects(folder: Path) -> pa.Table:
    return pq.read_table(Path(folder) / REJECTS)


def read_tar(path: Path | str, keep: Callable[[str], bool] | None = None) -> Iterator[dict[str, Any]]:
    """Samples of one tar in order, streamed: ``{"__key__", "__shard__", "<ext>": bytes, ...}``.

    ``keep(ext)`` selects the members whose bytes are read (the others are skipped). Every member must
    be a regular file named ``<key>.<ext>`` and a key's members must be consecutive.
    """
    path = Path(path)
    seen: set[str] = set()
    with open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        sample: dict[str, Any] = {}
        for member in tar:
            key, ext = member_name(member.name, path) if member.isfile() else ("", "")
            if not key:
                raise ShardFormatError(f"{path}: member {member.name!r} is not a regular file named <key>.<ext>")
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            if not sample:
                if key in seen:
                    raise ShardFormatError(f"{path}: the members of {key} are not consecutive")
                seen.add(key)
                sample = {"__key__": key, "__shard__": path.name}
            if keep is None or keep(ext):
                sample[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
        if sample:
            yield sample


def iter_samples(folder: Path | str) -> Iterator[dict[str, Any]]:
    """Samples of a shard set (all its tars, in name order)."""
    for tar_path in sorted(Path(folder).glob("*.tar")):
        yield from read_tar(tar_path)


def zip_sidecars(clip_tar: Path, sidecars: dict[str, Path], keep: Callable[[str], bool] | None = None,
                 keep_sidecar: Callable[[str, str], bool] | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one clip tar, each with ``sample[<feature>]`` = that feature's sidecar sample.

    ``sidecars`` maps a feature to the sidecar tar of the same name; they are streamed alongside (one
    pass over each file). ``keep(ext)`` / ``keep_sidecar(feature, ext)`` select the members read. A
    missing or misaligned sidecar is a :class:`ShardFormatError` naming both files and the fix.
    """
    for feature, path in sidecars.items():
        if not Path(path).is_file():
            raise ShardFormatError(f"{path} not found: the {feature} sidecar lacks {Path(clip_tar).name} "
                                   f"(re-run `dvc repro extract@{feature}-{Path(clip_tar).parent.name}`)")
    streams = {f: read_tar(p, (lambda ext, f=f: keep_sidecar(f, ext)) if keep_sidecar else None) for f, p in sidecars.items()}
    for sample in read_tar(clip_tar, keep):
        key = sample["__key__"]
        for feature, stream in streams.items():
            side = next(stream, None)
            if side is None or side["__key__"] != key:
                raise ShardFormatError(f"{sidecars[feature]}: expected {key}, found {side and side['__key__']}: the {feature} "
                                       f"sidecar is not aligned with {clip_tar} (re-run `dvc repro extract@{feature}-"
                                       f"{Path(clip_tar).parent.name}`)")
            sample[feature] = side
        yield sample


def load_json(data: bytes) -> dict[str, Any]:
    return json.loads(data)
