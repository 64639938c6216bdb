"""The ``weights`` stage: generate (tiny) or verify (paper) every model the configuration needs.

    python -m pipeline.weights build    # tiny: generate; paper: verify. Writes weights/<profile>/manifest.json
    python -m pipeline.weights fetch    # paper profile only, needs internet

Which models: the SD 1.5 backbone the network starts from (``weights.backbone``) and the
``WEIGHTS`` of every enabled feature. The folder contract itself (specs, verification, tiny
stand-ins, fingerprints) is :mod:`core.weights`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from core import cli
from core import params as params_mod
from core.storage import write_text_atomic
from core.weights import ModelSpec, WeightsError, WeightsParams, ensure, fingerprint, folder, is_tiny, verify

log = logging.getLogger(__name__)


# -- which models the configured pipeline needs --------------------------------------------------
def configured_specs(data: dict[str, Any]) -> list[ModelSpec]:
    """The SD 1.5 backbone the network starts from, every enabled feature's ``WEIGHTS``, then every judge
    (``weights.judges``: the losses and metrics need those the features do not)."""
    from core.sd15 import weights_spec
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
    if data.get("weights", {}).get("judges", True):
        import judges

        for spec in judges.specs():
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
            # sources off the hub, and published checkpoint hashes, where a spec has them
            **({"url": spec.url} if spec.url else {}), **({"checkpoint_sha256": spec.sha256} if spec.sha256 else {}),
        })
    manifest = {"profile": params.profile, "models": entries}
    write_text_atomic(root / params.dir / params.profile / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHORT_COMMIT = re.compile(r"^[0-9a-f]{7,39}$")


def resolve_revision(repo_id: str, revision: str | None, list_commits: Callable[[str], Iterable[Any]]) -> str | None:
    """The revision to download: a full commit id, a branch or tag as given; a short commit id (7-39 hex digits,
    as the hub's pages show them) as the one commit of ``repo_id``'s history (``list_commits(repo_id)``: objects
    with ``commit_id``, as ``HfApi.list_repo_commits`` gives) whose id starts with it; none or several is an error."""
    if not revision or FULL_COMMIT.match(revision) or not SHORT_COMMIT.match(revision):
        return revision or None
    found = sorted({c.commit_id for c in list_commits(repo_id) if c.commit_id.startswith(revision)})
    if len(found) != 1:
        what = "no commit" if not found else f"{len(found)} commits ({', '.join(found)})"
        raise WeightsError(f"{repo_id}: {what} of its history starts with the pinned {revision}; pin a full commit id "
                           f"(40 hex digits) from https://huggingface.co/{repo_id}/commits/main in its ModelSpec")
    return found[0]


def fetch_arguments(spec: ModelSpec) -> dict[str, Any]:
    """What ``fetch`` asks the hub for: the spec's pinned ``revision`` (None: the hub's main) and only its files
    (``allow_patterns``: ``fetch_patterns``, else exactly ``files``), never the whole repository."""
    return {"revision": spec.revision or None, "allow_patterns": list(spec.fetch_patterns or spec.files)}


def fetch(data: dict[str, Any], params: WeightsParams, root: Path = Path(".")) -> list[str]:  # pragma: no cover - needs internet
    """Download the configured real models hosted on the Hugging Face hub, only their required files, at
    their pinned revisions (paper profile; never called by stages); return what must be placed by hand
    (models from other sources: their URL and folder)."""
    if params.profile != "paper":
        raise WeightsError("fetch is for weights.profile: paper (tiny stand-ins are generated by `build`)")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise WeightsError("fetch needs the network, but HF_HUB_OFFLINE=1 is set (the Makefile sets it): run "
                           "`HF_HUB_OFFLINE=0 .venv/bin/python -m pipeline.weights fetch` on a machine with internet")
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi()
    by_hand = []
    for spec in configured_specs(data):
        path = folder(spec, params, root)
        if spec.bundled:
            continue
        if not spec.repo_id:
            if not all((path / f).exists() for f in spec.files):
                by_hand.append(f"{spec.name}: download {', '.join(spec.files)} from {spec.url or 'its source'} into {path}")
            continue
        if not spec.revision:
            log.warning("%s: no pinned revision; fetching the hub's current main (pin it in its ModelSpec)", spec.name)
        args = fetch_arguments(spec)
        args["revision"] = resolve_revision(spec.repo_id, args["revision"], api.list_repo_commits)
        if args["revision"] and args["revision"] != spec.revision:
            log.info("%s: %s is commit %s", spec.name, spec.revision, args["revision"])
        snapshot_download(spec.repo_id, **args, local_dir=path)
        verify(spec, path, "paper")
    build(data, params, root)
    return by_hand


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m pipeline.weights", __doc__)
    ap.add_argument("command", choices=["build", "fetch"], help="build: generate (tiny) or verify (paper); fetch: download (paper)")

    def body(args):
        data = params_mod.read_yaml(args.params)
        wp = params_mod.load(WeightsParams, "weights", args.params, data)
        if args.command == "build":
            manifest = build(data, wp)
            log.info("weights (%s): %d model folder(s) ready", wp.profile, len(manifest["models"]))
        else:
            for line in fetch(data, wp):
                log.warning("place by hand: %s", line)

    return cli.run(ap, argv, body)


if __name__ == "__main__":
    sys.exit(main())
