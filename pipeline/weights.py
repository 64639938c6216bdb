"""Model weights: local folders only, verified, with tiny seeded stand-ins (DESIGN 5).

Each model an extractor (or the trainer) loads is described by a :class:`ModelSpec`: its folder
name, the files a complete folder has, where the real one comes from (repo, revision, licence) and
``make_tiny(folder, seed)``, which writes a small randomly initialised model *with the same classes
and on-disk format* (``save_pretrained`` folder, Demucs ``.th`` + ``.yaml`` ...), so the loading
code exercised by the demo and the tests is the real one.

``weights.profile`` picks ``weights/<profile>/<name>/``:

* ``tiny``: generated on first use (``python -m pipeline.weights build`` does all at once); every
  tiny folder carries ``synchrorama_weights.json`` with ``"tiny": true``, and every result computed
  with it says so (:func:`is_tiny`);
* ``paper``: must already be there; ``python -m pipeline.weights fetch`` downloads the pinned
  revisions on a machine with internet. Nothing downloads at run time: a missing or incomplete
  folder is a :class:`WeightsError` naming the folder, the missing files and the fix.

    python -m pipeline.weights build    # tiny: generate; paper: verify. Writes weights/<profile>/manifest.json
    python -m pipeline.weights fetch    # paper profile only, needs internet
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pipeline import params as params_mod
from pipeline.cache import sha256_file

log = logging.getLogger(__name__)

MARKER = "synchrorama_weights.json"


@dataclass(frozen=True)
class WeightsParams:
    """``weights`` section of params.yaml."""

    profile: Literal["tiny", "paper"] = "tiny"
    dir: str = "weights"
    seed: int = 0  # seed of the tiny stand-ins
    backbone: bool = True  # build/verify the SD 1.5 folder the network is initialised from


@dataclass(frozen=True)
class ModelSpec:
    """One model folder: what makes it complete and where it comes from."""

    name: str  # folder name under weights/<profile>/
    files: tuple[str, ...]  # files a complete paper folder has (relative paths)
    make_tiny: Callable[[Path, int], None] | None = None  # writes the tiny stand-in into a folder
    tiny_files: tuple[str, ...] | None = None  # files of the tiny folder, if they differ from ``files``
    repo_id: str = ""  # Hugging Face repo (or other source) of the real weights
    revision: str = ""  # pinned revision for ``fetch``
    licence: str = ""
    bundled: bool = False  # real weights ship inside an installed package (mediapipe, silero-vad)

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
            source = f"{spec.repo_id}@{spec.revision or 'main'}" if spec.repo_id else "its source"
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
        log.info("generated tiny stand-in %s", path)
    return verify(spec, path, params.profile)


def _write_marker(path: Path, data: dict[str, Any]) -> None:
    (path / MARKER).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def is_tiny(path: Path) -> bool:
    """True when ``path`` holds a generated stand-in (its results must be labelled tiny)."""
    try:
        return bool(json.loads((Path(path) / MARKER).read_text()).get("tiny"))
    except (FileNotFoundError, ValueError):
        return False


def fingerprint(path: Path) -> str:
    """sha256 over the folder's files (names, sizes, contents); memoised on sizes and mtimes."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != ".fingerprint.json")
    stat_key = hashlib.sha256("\n".join(f"{p.relative_to(path)}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in files).encode()).hexdigest()
    memo = path / ".fingerprint.json"
    try:
        cached = json.loads(memo.read_text())
        if cached.get("stat_key") == stat_key:
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


# -- which models the configured pipeline needs --------------------------------------------------
def configured_specs(data: dict[str, Any]) -> list[ModelSpec]:
    """The SD 1.5 backbone the network starts from, then every enabled feature's ``WEIGHTS``."""
    from model.sd15 import weights_spec
    from pipeline.features import load_module

    specs: dict[str, ModelSpec] = {}
    if data.get("weights", {}).get("backbone", True):
        specs["stable-diffusion-v1-5"] = weights_spec()
    for name, entry in (data.get("features") or {}).items():
        entry = entry or {}
        if entry.get("enabled", True) is False:
            continue
        module = load_module(name, entry.get("module", ""))
        # A feature whose folders depend on its params (caption: backend and model) says so with
        # ``weights_for(params)``; ``WEIGHTS`` is the set for its default params.
        if hasattr(module, "weights_for"):
            feature_specs = module.weights_for(params_mod.from_dict(module.Params, dict(entry), f"features.{name}"))
        else:
            feature_specs = getattr(module, "WEIGHTS", ())
        for spec in feature_specs:
            specs.setdefault(spec.name, spec)
    return list(specs.values())


def build(data: dict[str, Any], params: WeightsParams, root: Path = Path(".")) -> dict[str, Any]:
    """Generate (tiny) or verify (paper) every configured model; write the weights manifest."""
    entries = []
    for spec in configured_specs(data):
        path = ensure(spec, params, root)
        entries.append({
            "name": spec.name, "path": str(path.relative_to(root.resolve())) if path.is_relative_to(root.resolve()) else str(path),
            "tiny": is_tiny(path), "sha256": fingerprint(path), "repo_id": spec.repo_id, "revision": spec.revision,
            "licence": spec.licence, "bundled": spec.bundled,
        })
    manifest = {"profile": params.profile, "models": entries}
    out = root / params.dir / params.profile / "manifest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".manifest.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out)
    return manifest


def fetch(data: dict[str, Any], params: WeightsParams, root: Path = Path(".")) -> None:  # pragma: no cover - needs internet
    """Download the real models at their pinned revisions (paper profile; never called by stages)."""
    if params.profile != "paper":
        raise WeightsError("fetch is for weights.profile: paper (tiny stand-ins are generated by `build`)")
    from huggingface_hub import snapshot_download

    for spec in configured_specs(data):
        if spec.bundled or not spec.repo_id:
            continue
        path = folder(spec, params, root)
        snapshot_download(spec.repo_id, revision=spec.revision or None, local_dir=path)
        verify(spec, path, "paper")
    build(data, params, root)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build, verify or fetch model weights (weights/<profile>/).")
    ap.add_argument("command", choices=["build", "fetch"])
    ap.add_argument("--params", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = params_mod.read_yaml(args.params)
    wp = params_mod.load(WeightsParams, "weights", args.params, data)
    try:
        if args.command == "build":
            manifest = build(data, wp)
            log.info("weights (%s): %d model folder(s) ready", wp.profile, len(manifest["models"]))
        else:
            fetch(data, wp)
    except WeightsError as e:
        log.error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
