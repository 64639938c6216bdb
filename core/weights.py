"""Model weights: local folders only, verified, with tiny seeded stand-ins (DESIGN 5).

Each model an extractor, a judge or the trainer loads is described by a :class:`ModelSpec`: its folder
name, the files a complete folder has, where the real one comes from (repo, revision, licence) and
``make_tiny(folder, seed)``, which writes a small randomly initialised model *with the same classes
and on-disk format* (``save_pretrained`` folder, Demucs ``.th`` + ``.yaml`` ...), so the loading
code exercised by the demo and the tests is the real one.

``weights.profile`` picks ``weights/<profile>/<name>/``:

* ``tiny``: generated on first use (the ``weights`` stage, ``python -m pipeline.weights build``, does
  all configured models at once); every tiny folder carries ``synchrorama_weights.json`` with
  ``"tiny": true``, and every result computed with it says so (:func:`is_tiny`);
* ``paper``: must already be there. Nothing downloads at run time: a missing or incomplete folder is
  a :class:`WeightsError` naming the folder, the missing files and the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from core.hashing import sha256_file

log = logging.getLogger(__name__)

MARKER = "synchrorama_weights.json"


@dataclass(frozen=True)
class WeightsParams:
    """``weights`` section of params.yaml."""

    profile: Literal["tiny", "paper"] = "tiny"
    dir: str = "weights"
    seed: int = 0  # seed of the tiny stand-ins
    backbone: bool = True  # build/verify the SD 1.5 folder the network is initialised from
    judges: bool = True  # build/verify every judge (losses and metrics need them), not only those the features use


@dataclass(frozen=True)
class ModelSpec:
    """One model folder: what makes it complete and where it comes from."""

    name: str  # folder name under weights/<profile>/
    files: tuple[str, ...]  # files a complete paper folder has (relative paths)
    make_tiny: Callable[[Path, int], None] | None = None  # writes the tiny stand-in into a folder
    tiny_files: tuple[str, ...] | None = None  # files of the tiny folder, if they differ from ``files``
    repo_id: str = ""  # Hugging Face hub repo of the real weights (``fetch`` downloads ``files`` from it)
    revision: str = ""  # pinned revision for ``fetch``
    licence: str = ""
    bundled: bool = False  # real weights ship inside an installed package (mediapipe, silero-vad)
    url: str = ""  # where the real weights come from when not on the hub (a release URL, a project page)
    sha256: str = ""  # of the main checkpoint file, when published or measured (recorded in the manifest)
    # what ``fetch`` downloads from ``repo_id`` (``allow_patterns``); default: exactly ``files``. Only for folders
    # whose loadable set is wider than the files checked (sharded weights, processor files that differ by release)
    fetch_patterns: tuple[str, ...] = ()

    def required(self, profile: str) -> tuple[str, ...]:
        return self.tiny_files if profile == "tiny" and self.tiny_files is not None else self.files


class WeightsError(FileNotFoundError):
    """A model folder is missing or incomplete."""


def folder(spec: ModelSpec, params: WeightsParams, root: Path = Path(".")) -> Path:
    return (root / params.dir / params.profile / spec.name).resolve()


def verify(spec: ModelSpec, path: Path, profile: str) -> Path:
    """Raise :class:`WeightsError` naming every missing file of ``spec`` in ``path``."""
    required = spec.required(profile)
    missing = [f for f in required if not (path / f).exists()]
    if not path.is_dir() or missing:
        what = "does not exist" if not path.is_dir() else f"is incomplete: missing {', '.join(missing)}"
        if profile == "tiny":
            fix = "run `python -m pipeline.weights build` (or delete the folder to regenerate it)"
        else:
            source = f"{spec.repo_id}@{spec.revision or 'main'}" if spec.repo_id else spec.url or "its source"
            fix = (f"copy the real model ({source}) there: `python -m pipeline.weights fetch` on a machine with "
                   f"internet, then sync the folder; expected files: {', '.join(required)}")
        raise WeightsError(f"weights folder {path} for '{spec.name}' {what}; {fix}")
    return path


def ensure(spec: ModelSpec, params: WeightsParams, root: Path = Path(".")) -> Path:
    """The verified folder of ``spec``; tiny stand-ins are generated (atomically) when absent."""
    path = folder(spec, params, root)
    if params.profile == "tiny" and not (path / MARKER).is_file():
        if spec.make_tiny is None:
            raise WeightsError(f"'{spec.name}' has no tiny stand-in generator; use weights.profile: paper")
        tmp = path.parent / f".{spec.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            spec.make_tiny(tmp, params.seed)
            _write_marker(tmp, {"tiny": True, "name": spec.name, "seed": params.seed,
                                "note": "randomly initialised stand-in: results computed with it prove the machinery, not quality"})
            verify(spec, tmp, "tiny")
            if path.exists():
                shutil.rmtree(path)
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.debug("generated tiny stand-in %s", path)  # the weights stage logs one line for all of them
    return verify(spec, path, params.profile)


def _write_marker(path: Path, data: dict[str, Any]) -> None:
    (path / MARKER).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def is_tiny(path: Path) -> bool:
    """True when ``path`` holds a generated stand-in (its results must be labelled tiny)."""
    try:
        return bool(json.loads((Path(path) / MARKER).read_text()).get("tiny"))
    except (FileNotFoundError, ValueError):
        return False


def fingerprint(path: Path, memo_ok: bool = True) -> str:
    """sha256 over the folder's files (names, sizes, contents); memoised on sizes and mtimes
    (``memo_ok=False`` re-reads every byte: the integrity check before unpickling a checkpoint)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != ".fingerprint.json")
    stat_key = hashlib.sha256("\n".join(f"{p.relative_to(path)}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in files).encode()).hexdigest()
    memo = path / ".fingerprint.json"
    try:
        cached = json.loads(memo.read_text())
        if memo_ok and cached.get("stat_key") == stat_key:
            return cached["sha256"]
    except (FileNotFoundError, ValueError):
        pass
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(path).as_posix()}\0{sha256_file(p)}\n".encode())
    digest = h.hexdigest()
    try:
        tmp = memo.with_name(f".fingerprint.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps({"stat_key": stat_key, "sha256": digest}))
        os.replace(tmp, memo)
    except OSError:  # a read-only weights folder is fine
        pass
    return digest
