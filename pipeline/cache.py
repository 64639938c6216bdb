"""Content-addressed per-(clip, step) cache (DESIGN 3.3).

An entry is keyed by ``sha256(step name, step version, step params, weights fingerprint, input
fingerprint)``, the input being what the step reads of the clip (the whole record for ingest steps;
for a feature only its own inputs, e.g. the wav's hash, so a video-only change keeps audio features
cached) and lives in ``<cache.dir>/<step>/<k[:2]>/<k>/``: the files the step wrote
plus ``record.json`` (the resulting clips, or the Drop). A step writes into a private temporary
folder; the entry appears only when the whole folder is renamed into place, so a killed run never
leaves a half-written entry and a re-run resumes from what is complete. Rejects are cached like
results, so a corrupt file is probed once.

Paths inside ``record.json`` are relative to the cache root, so a cache on shared storage can be
mounted at another path by another machine of the team.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from core.clip import Clip, Drop, canonical_json
from core.hashing import sha256_file

log = logging.getLogger(__name__)

Result = Union[list[Clip], Drop]

RECORD = "record.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class UntrustedEntry(ValueError):
    """A cache record that points outside the cache or lacks a file hash (altered or damaged)."""


@dataclass(frozen=True)
class CacheParams:
    """``cache`` section of params.yaml."""

    dir: str = ".cache"  # point it at shared storage to reuse results across a team
    min_free_mb: float = 200.0  # a stage stops before any compute when the cache folder has less free space

    def root(self, project: Path | str) -> Path:
        """The cache folder: ``dir`` itself when absolute, else relative to the project's workspace.

        ``dvc exp run --temp`` and queued experiments run in a copy of the repository inside the
        workspace's own ``.dvc/tmp/exps/<name>/`` (DVC points that copy at the workspace's DVC cache
        the same way); a relative ``dir`` resolves against the workspace there too, so an experiment
        that changes one threshold reuses every cached step instead of recomputing all of them.
        """
        folder = Path(self.dir).expanduser()
        return folder if folder.is_absolute() else dvc_workspace(Path(project)) / folder


def dvc_workspace(project: Path) -> Path:
    """The workspace a DVC temporary experiment copy was made from, or ``project`` itself.

    DVC 3 makes the copy under ``<workspace>/.dvc/tmp/exps/`` (``standalone/tmpXXXX`` for
    ``--temp``, other folders for queued runs): the nearest ``.dvc/tmp/exps`` above ``project``
    that belongs to a DVC workspace names it."""
    parts = project.resolve().parts
    for i in range(len(parts) - 3, 0, -1):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            origin = Path(*parts[:i])
            if (origin / ".dvc" / "config").is_file():
                return origin
    return project


class Cache:
    """The per-step result store. Safe for concurrent writers of the same key (first one wins)."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(exist_ok=True)

    # -- keys -------------------------------------------------------------------------------------
    @staticmethod
    def key(step_identity: str, inputs: Clip | str) -> str:
        """The entry of a step (its identity) on ``inputs``: a clip (its whole record) or the
        fingerprint of what the step reads of one (``Step.input_fingerprint``)."""
        fingerprint = inputs.fingerprint() if isinstance(inputs, Clip) else inputs
        return hashlib.sha256(f"{step_identity}\n{fingerprint}".encode()).hexdigest()

    def entry(self, step_name: str, key: str) -> Path:
        return self.root / step_name / key[:2] / key

    # -- read -------------------------------------------------------------------------------------
    def get(self, step_name: str, key: str) -> Result | None:
        """The cached result, or ``None`` on a miss (an unreadable or untrustworthy entry counts as a miss)."""
        record = self.entry(step_name, key) / RECORD
        try:
            data = json.loads(record.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("cache entry %s unreadable (%s); recomputing", record, e)
            return None
        try:
            return self._decode(data)
        except (UntrustedEntry, KeyError, TypeError, ValueError) as e:
            log.warning("cache entry %s rejected (%s); recomputing", record, e)
            return None

    def _decode(self, data: dict) -> Result:
        """The result of a record; every file path must stay inside the cache (relative, no ``..``, no
        link out) and every file must have a sha256: the cache may be shared, so its records are
        untrusted (the bytes are checked against the hashes when they are published)."""
        if data.get("drop") is not None:
            return Drop(**data["drop"])
        clips = []
        for c in data["clips"]:
            c = dict(c)
            files = {}
            for name, rel in c["files"].items():
                if not isinstance(rel, str) or os.path.isabs(rel) or not rel:
                    raise UntrustedEntry(f"file {name!r} has the path {rel!r}, not one relative to the cache")
                path = (self.root / rel).resolve()
                if not path.is_relative_to(self.root):
                    raise UntrustedEntry(f"file {name!r} at {rel!r} leads outside the cache {self.root}")
                if not _SHA256.match(str(c["file_hashes"].get(name, ""))):
                    raise UntrustedEntry(f"file {name!r} has no sha256")
                files[name] = str(path)
            c["files"] = files
            clips.append(Clip.from_json(c))
        return clips

    # -- write ------------------------------------------------------------------------------------
    def new_workdir(self) -> Path:
        path = self.tmp / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def put(self, step_name: str, key: str, workdir: Path, result: Result) -> Result:
        """Move ``workdir`` (the step's output folder) into the cache as entry ``key``.

        Files the step wrote into ``workdir`` are hashed into ``file_hashes`` and referenced from
        the entry; returns the result as it reads back from the cache.
        """
        final = self.entry(step_name, key)
        workdir = workdir.resolve()
        if isinstance(result, Drop):
            data = {"drop": {"reason": result.reason, "message": result.message}, "clips": None}
        else:
            clips = []
            for clip in result:
                files, hashes = {}, dict(clip.file_hashes)
                for name, p in clip.files.items():
                    p = Path(p).resolve()
                    if p.is_relative_to(workdir):  # written by this step: will live in the entry
                        hashes[name] = sha256_file(p)
                        p = final / p.relative_to(workdir)
                    elif not p.is_relative_to(self.root):  # an input from outside the cache: copied in, since
                        copy = workdir / "inherited" / name  # a record names files inside the cache only
                        copy.parent.mkdir(exist_ok=True)
                        shutil.copyfile(p, copy)
                        hashes[name] = sha256_file(copy)
                        p = final / copy.relative_to(workdir)
                    elif name not in hashes:  # inherited from an earlier step: normally hashed already
                        hashes[name] = sha256_file(p)
                    files[name] = os.path.relpath(p, self.root)
                c = clip.to_json()
                c["files"], c["file_hashes"] = files, hashes
                clips.append(c)
            data = {"drop": None, "clips": clips}
        (workdir / RECORD).write_text(canonical_json(data))
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(workdir, final)
        except OSError:
            # Another worker committed the same key first (or a stale entry without a record is in
            # the way): keep a complete entry, replace an incomplete one.
            if (final / RECORD).is_file() and self.get(step_name, key) is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                shutil.rmtree(final, ignore_errors=True)
                os.rename(workdir, final)
        cached = self.get(step_name, key)
        assert cached is not None
        return cached

    def discard(self, workdir: Path) -> None:
        shutil.rmtree(workdir, ignore_errors=True)

    # -- source hashing ---------------------------------------------------------------------------
    def source_hash(self, path: Path) -> str:
        """sha256 of a raw file, memoised on (path, size, mtime, inode) so re-runs do not re-read it."""
        st = path.stat()
        memo_key = hashlib.sha1(os.fsencode(path.resolve()) + f"|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}".encode()).hexdigest()
        memo = self.root / "filehash" / memo_key[:2] / memo_key
        try:
            memoised = memo.read_text().strip()
            if _SHA256.match(memoised):
                return memoised
        except (FileNotFoundError, UnicodeDecodeError):
            pass
        digest = sha256_file(path)
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, memo)
        return digest

    def clean_tmp(self, older_than_s: float = 3600.0) -> None:
        """Remove work folders left by killed runs (old ones only: another run may share the cache)."""
        now = time.time()
        for p in self.tmp.iterdir():
            try:
                if now - p.stat().st_mtime > older_than_s:
                    shutil.rmtree(p, ignore_errors=True)
            except FileNotFoundError:
                pass
