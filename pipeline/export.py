"""``python -m pipeline.export``: one split as WebDataset shards any reader can stream, with a dataset card.

    python -m pipeline.export --split train --out DIR [--features a,b,...] [--params params.yaml]

Reads the split list (``shards/splits/<split>.jsonl``, written by ``select``) and, through
:mod:`core.shards` only (:class:`ShardLayout`, :func:`zip_sidecars`), each listed clip's sample with
the sidecar samples of the selected features (default: every feature in ``params.yaml`` that has a
sidecar for each exported dataset). Writes into ``DIR``:

* ``<split>-000000.tar`` ...: one sample per clip under its key (keys are unique across datasets:
  they start with the dataset): the clip's members as they are (``json``, ``mp4``, ``wav``,
  ``landmarks.npy``) and each feature's members prefixed with the feature (``vocals.json``,
  ``vocals.wav``, ``audio_embed.npy``, ``caption.text_states.npy`` ...), so no two collide. A new tar
  starts at ``export.max_bytes`` or ``export.max_count``. Samples are ordered by dataset, clip shard
  and key; tar headers are fixed (mtime 0, uid/gid 0, no user names), so exporting twice gives
  identical bytes.
* ``<split>-000000_stats.json`` per tar: samples, seconds, bytes, datasets, first and last key.
* ``<split>.json``: the split's summary (datasets, sources, clips, hours, speakers, features,
  members, models), from which ``README.md``, the dataset card (:mod:`pipeline.export_card`), is
  rendered for every split exported into ``DIR``.

Earlier ``<split>-*`` files in ``DIR`` are replaced; other splits' files are left alone. Not a DVC
stage: it copies already-built shards and runs no model.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from core import cli, params
from core.shards import ShardLayout, ShardParams, read_members, safe_name, zip_sidecars
from pipeline import export_card

log = logging.getLogger("pipeline.export")


@dataclass(frozen=True)
class ExportParams:
    """``export`` section of params.yaml (optional: these defaults apply without it)."""

    max_bytes: int = 1_000_000_000  # a new tar once this many bytes are written (WebDataset's usual ~1 GB)
    max_count: int = 10_000  # ... or this many samples


class _Writer:
    """``<split>-NNNNNN.tar`` files with fixed headers, rolled at a size or count limit, plus their stats."""

    def __init__(self, folder: Path, split: str, p: ExportParams):
        self.folder, self.split, self.p = folder, split, p
        self.tar: tarfile.TarFile | None = None
        self.stats: list[dict[str, Any]] = []

    def add(self, key: str, members: list[tuple[str, bytes]], seconds: float, dataset: str) -> None:
        size = sum(len(b) for _, b in members)
        s = self.stats[-1] if self.stats else None
        if self.tar is None or (s["samples"] and (s["member_bytes"] + size > self.p.max_bytes or s["samples"] >= self.p.max_count)):
            self._roll()
            s = self.stats[-1]
        for ext, data in members:
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
            self.tar.addfile(info, io.BytesIO(data))  # type: ignore[union-attr]
        s["samples"] += 1
        s["member_bytes"] += size
        s["seconds"] = round(s["seconds"] + seconds, 6)
        s["datasets"][dataset] = s["datasets"].get(dataset, 0) + 1
        s["first_key"] = s["first_key"] or key
        s["last_key"] = key

    def _roll(self) -> None:
        self.close()
        name = f"{self.split}-{len(self.stats):06d}.tar"
        self.tar = tarfile.open(self.folder / name, "w", format=tarfile.PAX_FORMAT)
        self.stats.append({"shard": name, "samples": 0, "seconds": 0.0, "member_bytes": 0, "datasets": {}, "first_key": "", "last_key": ""})

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None
            s = self.stats[-1]
            s["bytes"] = (self.folder / s["shard"]).stat().st_size
            stats = {k: s[k] for k in ("shard", "samples", "seconds", "bytes", "member_bytes", "datasets", "first_key", "last_key")}
            (self.folder / s["shard"].replace(".tar", "_stats.json")).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")


def read_split(layout: ShardLayout, split: str) -> list[dict[str, Any]]:
    path = layout.split(split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dvc repro select` first (or pick a split of {', '.join(('train', 'val', 'test'))})")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        safe_name(r["dataset"], f"{path}: dataset")
        safe_name(r["shard"], f"{path}: shard")
    return rows


def pick_features(layout: ShardLayout, data: dict[str, Any], datasets: list[str], requested: list[str] | None) -> list[str]:
    """The features to join: ``requested`` (each must have a sidecar for every dataset), else every
    configured feature that does."""
    configured = sorted((data.get("features") or {}).keys())
    have = {ds: set(layout.sidecars(ds)) for ds in datasets}
    if requested is None:
        return [f for f in configured if all(f in have[ds] for ds in datasets)]
    for f in requested:
        safe_name(f, "--features entry")
        for ds in datasets:
            if f not in have[ds]:
                raise FileNotFoundError(f"{layout.feature(f, ds)}: no {f} sidecar for dataset {ds}; run "
                                        f"`dvc repro extract@{f}-{ds}` or leave {f} out of --features")
    return list(requested)


def samples(layout: ShardLayout, rows: list[dict[str, Any]], features: list[str]) -> Iterator[tuple[str, str, list[tuple[str, bytes]], dict[str, Any]]]:
    """``(dataset, key, members, clip record)`` of every listed clip, ordered by dataset, clip shard and key."""
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        wanted[(r["dataset"], r["shard"])].add(r["key"])
    for (dataset, shard), keys in sorted(wanted.items()):
        sidecars = {f: layout.sidecar_shard(f, dataset, shard) for f in features}
        found = set()
        for sample in zip_sidecars(layout.clip_shard(dataset, shard), sidecars):
            key = sample["__key__"]
            if key not in keys:
                continue
            found.add(key)
            members = sorted((ext, v) for ext, v in sample.items() if not ext.startswith("__") and ext not in sidecars)
            for f in features:
                members += sorted((f"{f}.{ext}", v) for ext, v in sample[f].items() if not ext.startswith("__"))
            yield dataset, key, members, json.loads(sample["json"]) if "json" in sample else {}
        if keys - found:
            missing = sorted(keys - found)[0]
            raise FileNotFoundError(f"{layout.clip_shard(dataset, shard)}: lacks {missing} listed in the split: the split "
                                    f"list is older than the shards; run `dvc repro select`")


def run(split: str, out: Path, features: list[str] | None = None, root: Path = Path("."), params_file: Path | None = None) -> dict[str, Any]:
    """Export ``split`` into ``out``; returns the split summary (also ``out/<split>.json``)."""
    data = params.read_yaml(params_file or root / "params.yaml")
    where = str(params_file or root / "params.yaml")
    layout = ShardLayout.from_params(params.load(ShardParams, "shards", where, data), root)
    p = params.load(ExportParams, "export", where, data) if "export" in data else ExportParams()
    safe_name(split, "--split")
    rows = read_split(layout, split)
    datasets = sorted({r["dataset"] for r in rows})
    chosen = pick_features(layout, data, datasets, features)
    out.mkdir(parents=True, exist_ok=True)
    for old in sorted(out.glob(f"{split}-*.tar")) + sorted(out.glob(f"{split}-*_stats.json")):
        old.unlink()

    writer = _Writer(out, split, p)
    member_names: set[str] = set()
    per_dataset: dict[str, dict[str, Any]] = {}
    try:
        for dataset, key, members, record in samples(layout, rows, chosen):
            seconds = float(record.get("duration") or 0.0)
            writer.add(key, members, seconds, dataset)
            member_names.update(ext for ext, _ in members)
            d = per_dataset.setdefault(dataset, {"clips": 0, "seconds": 0.0, "sources": set()})
            d["clips"] += 1
            d["seconds"] += seconds
            d["sources"].add(record.get("source_hash") or record.get("source_rel") or key)
    finally:
        writer.close()
    declared = {f: [m.__dict__ for m in read_members(layout.feature(f, datasets[0]))] for f in chosen} if datasets else {}
    summary = export_card.split_summary(split, rows, chosen, sorted(member_names), writer.stats, per_dataset, declared, layout, data)
    (out / f"{split}.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    export_card.write_card(out)
    log.info("export %s: %d samples in %d shard(s), %.3f h, features: %s -> %s", split, summary["clips"],
             len(writer.stats), summary["hours"], ", ".join(chosen) or "(none)", out)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m pipeline.export", __doc__)
    ap.add_argument("--split", required=True, help="train, val or test (a shards/splits/<split>.jsonl)")
    ap.add_argument("--out", required=True, type=Path, help="the folder to write the shards and the dataset card into")
    ap.add_argument("--features", default=None, help="comma-separated features to join (default: every one with sidecars)")

    def body(a):
        feats = [f.strip() for f in a.features.split(",") if f.strip()] if a.features is not None else None
        run(a.split, a.out, feats, params_file=a.params)

    return cli.run(ap, argv, body)


if __name__ == "__main__":
    sys.exit(main())
