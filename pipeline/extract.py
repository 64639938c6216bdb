"""``extract@<feature>-<dataset>``: run one feature extractor over a dataset's clip shards.

    python -m pipeline.extract <feature> <dataset> [--local]

Reads ``shards/clips/<dataset>/``, unpacks each clip's media once into the content-addressed blob
store of the cache (``<cache>/blobs/``; the ingest hashes name them, so a re-run unpacks nothing),
maps the extractor over the clips with the runner (cached per clip), and writes the sidecar
``shards/features/<feature>/<dataset>/`` with the clip shards' names and key order, plus its
``rejects.parquet`` and ``reports/extract/<feature>-<dataset>.json``. A clip the extractor drops
still gets a sidecar ``json`` (``{"status": "dropped", "reason": ...}``) so sidecars stay aligned.

Features an extractor ``needs`` (``audio_embed`` reads ``vocals`` when it is enabled) are run
first through the same runner and per-clip cache: cache hits when their own stage ran with the same
params and weights, computed (and cached for that stage) otherwise, so stages may run in any order.
A clip a needed feature drops is rejected with that reason. ``enabled: false`` writes an aligned
sidecar whose jsons say ``disabled``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from core import cli, params, weights
from core.storage import check_writable
from core.clip import Clip, Drop, canonical_json
from core.shards import (
    MANIFEST,
    REJECTS,
    Member,
    Reject,
    ShardFormatError,
    ShardLayout,
    ShardParams,
    clip_from_json,
    iter_samples,
    load_json,
    member_name,
    verified_bytes,
    write_sidecars,
)
from pipeline import features as features_mod
from pipeline.cache import Cache, CacheParams
from pipeline.runner import Runner, RunnerParams
from core.runs import runs_dir, write_run
from pipeline.stats import StageStats, both, check_error_share, metrics, write_json, write_metrics

log = logging.getLogger("pipeline.extract")


def unpack_clips(clip_dir: Path, cache: Cache, needs: dict[str, Path] | None = None) -> list[Clip]:
    """Clip records of a shard set, with ``files`` pointing at unpacked blobs (written once).

    ``needs`` maps other features to their sidecar folders; their members are unpacked too, as
    ``files["<feature>.<ext>"]``.
    """
    sets = {"": clip_dir, **(needs or {})}
    by_key: dict[str, dict[str, Any]] = {}
    for feature, folder in sets.items():
        if not (folder / MANIFEST).is_file():
            raise FileNotFoundError(f"{folder}/{MANIFEST} not found: run the stage that writes it first "
                                    f"({'ingest' if not feature else 'extract@' + feature})")
        for sample in iter_samples(folder):
            entry = by_key.setdefault(sample["__key__"], {"files": {}})
            for ext, data in sample.items():
                if ext.startswith("__"):
                    continue
                if not feature and ext == "json":
                    entry["json"] = load_json(data)
                    continue
                name = ext if not feature else f"{feature}.{ext}"
                entry["files"][name] = str(_blob(cache, data, ext))
    clips = []
    for key, entry in by_key.items():
        if "json" not in entry:
            raise KeyError(f"{key}: present in a sidecar but not in {clip_dir}")
        clip = clip_from_json(entry["json"], entry["files"], {n: Path(p).name.split(".", 1)[0] for n, p in entry["files"].items()})
        clips.append(clip)
    return sorted(clips, key=lambda c: c.key)


def _blob(cache: Cache, data: bytes, ext: str) -> Path:
    """Where ``data`` lives in the blob store: named by its sha256 and the member's extension (checked:
    a crafted shard's member name must never lead outside ``<cache>/blobs/``)."""
    member_name(f"blob.{ext}", "blob store")
    digest = hashlib.sha256(data).hexdigest()
    blobs = cache.root / "blobs"
    path = blobs / digest[:2] / f"{digest}.{ext}"
    if not path.parent.resolve().is_relative_to(blobs.resolve()):
        raise ShardFormatError(f"{path}: a blob would be written outside {blobs}; remove that link from the cache and re-run")
    # A blob of another size, or a link planted in a shared cache, is replaced (a full re-hash of every
    # existing blob would double the reads of each extract stage).
    if path.is_symlink() or not path.is_file() or path.stat().st_size != len(data):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def run(feature: str, dataset: str, root: Path = Path("."), local: bool | None = None, params_file: Path | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = params.read_yaml(params_file)
    where = str(params_file or params.params_path())
    raw = params.section(data, f"features.{feature}", where) or {}
    module = features_mod.load_module(feature, raw.get("module", ""))
    fparams = params.from_dict(module.Params, raw, f"{where}: features.{feature}")
    wparams = params.load(weights.WeightsParams, "weights", where, data)
    rparams = params.load(RunnerParams, "runner", where, data)
    if local is not None:
        rparams = dataclasses.replace(rparams, local=local)
    cache_params, shard_params = params.load(CacheParams, "cache", where, data), params.load(ShardParams, "shards", where, data)
    check_writable(cache_params.root(root), cache_params.min_free_mb, "cache.dir")  # before any compute, not after it
    cache = Cache(cache_params.root(root))
    layout = ShardLayout.from_params(shard_params, root)
    check_writable(layout.features_root, shard_params.min_free_mb, "shards.root")
    if not fparams.enabled:
        return _disabled(feature, dataset, root, layout, t0)
    extractor = module.Extractor(fparams, wparams, root, features=features_mod.enabled(data))
    declared = {m.name: m for m in getattr(module, "MEMBERS", ())}
    undeclared = [n for n in extractor.needs if n not in getattr(module, "READS", ())]
    if undeclared:  # READS names the code its DVC stage depends on (pipeline/features/code_links.py)
        raise ValueError(f"feature {feature} reads {undeclared[0]}, which {module.__name__}.READS does not declare; add it "
                         f"there and run `python -m pipeline.features.code_links`")

    clips = unpack_clips(layout.clips(dataset), cache)
    stats = StageStats("extract", f"{feature}-{dataset}", inputs=len(clips))
    needed: dict[str, Drop] = {}  # clip key -> drop of a needed feature
    with Runner(rparams, cache, stage=f"extract@{feature}-{dataset}") as runner:
        # Features this one reads run first through the same per-clip cache: hits when their own
        # stage ran already (same params and weights), computed (and cached for it) otherwise.
        for need in extractor.needs:
            need_raw = params.section(data, f"features.{need}", where) or {}
            need_mod = features_mod.load_module(need, need_raw.get("module", ""))
            need_ext = need_mod.Extractor(params.from_dict(need_mod.Params, need_raw, f"{where}: features.{need}"), wparams, root,
                                          features=features_mod.enabled(data))
            need_out = runner.map(need_ext, [c for c in clips if c.key not in needed])
            stats.add(need_out)
            merged = {}
            for c, r in zip(need_out.inputs, need_out.results):
                if isinstance(r, Drop):
                    needed[c.key] = Drop(r.reason, f"{need}: {r.message}")
                else:
                    (o,) = r
                    merged[c.key] = c.evolve(files={k: v for k, v in o.files.items() if k.startswith(f"{need}.")},
                                             file_hashes={k: v for k, v in o.file_hashes.items() if k.startswith(f"{need}.")},
                                             meta={need: o.meta.get(need, {})})
            clips = [merged.get(c.key, c) for c in clips]
        outcome = runner.map(extractor, [c for c in clips if c.key not in needed])
        runner_mode = runner.mode
    stats.add(outcome)
    if needed:  # clips a needed feature dropped: rejected here too, with its reason
        results = dict(zip((c.key for c in outcome.inputs), outcome.results))
        outcome.inputs, outcome.results = clips, [needed.get(c.key) or results[c.key] for c in clips]

    provenance = extractor.provenance()
    samples: dict[str, list[tuple[str, bytes]]] = {}
    rows: dict[str, dict[str, Any]] = {}
    rejects = []
    for clip, result in zip(outcome.inputs, outcome.results):
        if isinstance(result, Drop):
            body = {"status": "dropped", "reason": result.reason, "message": result.message, **provenance}
            samples[clip.key] = [("json", canonical_json(body).encode())]
            rows[clip.key] = {"status": result.reason}
            rejects.append(Reject(dataset, clip.source_rel, clip.key, feature, result.reason, result.message))
            continue
        (out,) = result
        body = {"status": "ok", "key": clip.key, "values": out.meta.get(feature, {}), **provenance}
        members = [("json", canonical_json(body).encode())]
        prefix = f"{feature}."
        for name in sorted(out.files):
            if name.startswith(prefix):
                members.append((name[len(prefix):], _checked(declared, feature, module, clip, name[len(prefix):], verified_bytes(out, name))))
        samples[clip.key] = members
        rows[clip.key] = {"status": "ok", **{f"score_{k}": float(v) for k, v in sorted(out.scores.items()) if k.startswith(feature)}}

    write_sidecars(layout.feature(feature, dataset), layout.clips(dataset), samples, rows, rejects,
                   members=tuple(declared.values()), feature=feature)
    report = stats.to_json(kept=len(outcome.kept))
    report["tiny_weights"] = extractor.tiny
    report["needs"] = list(extractor.needs)
    write_json(root / "reports" / "extract" / f"{feature}-{dataset}.json", report)
    write_metrics(root, f"extract-{feature}-{dataset}", metrics(
        len(outcome.inputs), len(outcome.kept), report["dropped"],
        sum(c.duration or 0.0 for c, r in zip(outcome.inputs, outcome.results) if not isinstance(r, Drop)) / 3600,
        extractor.tiny))
    run_record = stats.run_record(len(outcome.kept), time.perf_counter() - t0, runner_mode)
    write_run(runs_dir(root), f"extract-{feature}-{dataset}", run_record)
    check_error_share(f"extract@{feature}-{dataset}", rejects, len(outcome.inputs), rparams.max_error_fraction,
                      layout.feature(feature, dataset) / REJECTS)
    return both(report, run_record)


def _checked(declared: dict[str, Member], feature: str, module: Any, clip: Clip, name: str, data: bytes) -> bytes:
    """A member's bytes, once they match the feature's declaration (``MEMBERS``): the training loader
    trusts these declarations, so an undeclared member or a wrong dtype/shape stops the stage here."""
    member = declared.get(name)
    if member is None:
        raise ShardFormatError(f"feature {feature} wrote {clip.key}.{name}, which {module.__name__}.MEMBERS does not declare "
                               f"(declared: {', '.join(declared) or 'none'}); add it to MEMBERS")
    if name.endswith(".npy") or name == "npy":
        frames = clip.meta.get("encode", {}).get("frames")
        member.check(data, int(frames) if frames is not None else None, where=f"feature {feature}: {clip.key}.{name}")
    return data


def _disabled(feature: str, dataset: str, root: Path, layout: ShardLayout, t0: float) -> dict[str, Any]:
    """``features.<feature>.enabled: false``: an aligned sidecar whose every json says so (no model runs)."""
    from core.shards import read_manifest

    clip_dir = layout.clips(dataset)
    if not (clip_dir / MANIFEST).is_file():
        raise FileNotFoundError(f"{clip_dir}/{MANIFEST} not found: run the stage that writes it first (ingest)")
    keys = read_manifest(clip_dir).column("key").to_pylist()
    body = canonical_json({"status": "disabled", "feature": feature}).encode()
    write_sidecars(layout.feature(feature, dataset), clip_dir, {k: [("json", body)] for k in keys},
                   {k: {"status": "disabled"} for k in keys}, feature=feature)
    report = {"stage": "extract", "name": f"{feature}-{dataset}", "inputs": len(keys), "kept": 0, "dropped": 0,
              "dropped_by_reason": {}, "disabled": True}
    write_json(root / "reports" / "extract" / f"{feature}-{dataset}.json", report)
    write_metrics(root, f"extract-{feature}-{dataset}", metrics(len(keys), 0, 0, 0.0, False))
    write_run(runs_dir(root), f"extract-{feature}-{dataset}", {"seconds": round(time.perf_counter() - t0, 3), "disabled": True})
    log.info("features.%s is disabled: wrote an empty sidecar for %s", feature, dataset)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m pipeline.extract", "Run one feature extractor over a dataset's clip shards.")
    ap.add_argument("feature", help="a key of `features` in params.yaml")
    ap.add_argument("dataset", help="a key of `datasets` in params.yaml")
    ap.add_argument("--local", action="store_true", default=None, help="run in-process, no worker processes or Ray (debugging)")
    return cli.run(ap, argv, lambda a: run(a.feature, a.dataset, local=a.local, params_file=a.params), (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
