"""The cached ground-truth side of FID and FVD for a test split (its own DVC stage, ``eval_reference``).

    python -m model.evaluation.reference [--params FILE] [-v]

Writes ``<evaluate.reference_dir>/<split>.pt`` (per dataset of the split, per metric the ground-truth feature sums
``target_sum (D,)``, ``target_outer (D, D)``, ``target_count`` of :class:`model.metrics.frechet.FrechetMetric`)
and ``<split>.json`` (what they were computed from: the split's clip keys, frame size, frames per clip,
FVD stride, the judges' fingerprints). The ground-truth videos are those of :mod:`model.evaluation.targets`
(the same files the evaluation measures), so the cached sums equal what the evaluation would compute;
:func:`load_reference` returns them only when every one of those choices matches (else the evaluation
computes the ground-truth side itself and says so in ``protocol.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from core import cli
from core import params as params_mod
from core.shards import ShardParams
from core.weights import fingerprint, is_tiny

log = logging.getLogger("model.evaluate")
FRECHET = ("fid", "fvd")


def _judge_folders(weights_dir: Path) -> dict[str, Path]:
    from judges import i3d, inception

    return {"fid": weights_dir / inception.SPEC.name, "fvd": weights_dir / i3d.SPEC.name}


def _meta(split: str, keys: list[str], size: int, max_frames: int, fvd_stride: int, weights_dir: Path) -> dict[str, Any]:
    judges = {m: (fingerprint(f) if f.is_dir() else None) for m, f in _judge_folders(weights_dir).items()}
    return {"split": split, "clips": len(keys), "keys_sha256": hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest(),
            "size": size, "max_frames": max_frames, "fvd_stride": fvd_stride, "judges": judges,
            "tiny": any(is_tiny(f) for f in _judge_folders(weights_dir).values() if f.is_dir())}


def load_reference(folder: Path, split: str, keys: list[str], size: int, max_frames: int, fvd_stride: int,
                   weights_dir: Path) -> dict[str, dict[str, dict]] | None:
    """The cached sums ``{dataset: {metric: sums}}`` when computed for exactly this evaluation, else None (logged)."""
    stats, meta = folder / f"{split}.pt", folder / f"{split}.json"
    if not stats.is_file() or not meta.is_file():
        log.info("no cached reference statistics in %s: FID/FVD's ground-truth side is computed here", folder)
        return None
    want = _meta(split, keys, size, max_frames, fvd_stride, weights_dir)
    have = json.loads(meta.read_text())
    differ = sorted(k for k in want if have.get(k) != want[k])
    if differ:
        log.warning("%s was computed with other %s: FID/FVD's ground-truth side is computed here "
                    "(run `dvc repro eval_reference`)", meta, ", ".join(differ))
        return None
    return torch.load(stats, weights_only=True)


def compute(params_file: Path | str | None = None) -> dict[str, Any]:
    from model.data.clips import iter_clips, split_entries
    from model.evaluation.params import resolve
    from model.evaluation.targets import clip_frames, write_target
    from model.data import DataParams
    from model.metrics import cli as metrics_cli
    from model.training.params import resolve as train_resolve

    res = resolve(params_file)
    e = res.evaluate
    # the frame size stage 2 trains with (data + train.tiny), not the checkpoint: retraining keeps these statistics
    data = params_mod.load(DataParams, "data", params_file, data=train_resolve("stage2", params_file).raw)
    shard_root = params_mod.from_dict(ShardParams, res.raw.get("shards") or {}, "shards").root
    entries = split_entries(e.split, shard_root)
    entries = entries[:e.max_clips] if e.max_clips else entries
    keys = [x["key"] for x in entries]
    wanted = [m for m in metrics_cli.parse_metrics(e.metrics) if m in FRECHET]
    states: dict[str, dict] = {}  # per dataset: Table 1 reports each test set on its own
    for dataset in sorted({x["dataset"] for x in entries}):
        with tempfile.TemporaryDirectory(prefix="eval-reference-") as tmp:
            mine = {x["key"] for x in entries if x["dataset"] == dataset}
            for clip in iter_clips(data, e.split, shard_root, keys=mine):
                write_target(clip, Path(tmp), clip_frames(clip, e.max_frames))
            states[dataset] = metrics_cli.reference_states(Path(tmp), wanted, res.weights_dir, data.size, "cpu", e.fvd_stride)
    folder = Path(e.reference_dir)
    folder.mkdir(parents=True, exist_ok=True)
    meta = _meta(e.split, keys, data.size, e.max_frames, e.fvd_stride, res.weights_dir)
    meta["counts"] = {d: {m: int(s["target_count"]) for m, s in by.items()} for d, by in states.items()}
    for name, write in ((f"{e.split}.pt", lambda p: torch.save(states, p)),
                        (f"{e.split}.json", lambda p: p.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n"))):
        tmp_path = folder / f".{name}.tmp-{os.getpid()}"
        write(tmp_path)
        os.replace(tmp_path, folder / name)
    log.info("reference statistics of %s: %s", e.split, meta["counts"])
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m model.evaluation.reference", __doc__)
    return cli.run(ap, argv, lambda a: compute(a.params))


if __name__ == "__main__":
    raise SystemExit(main())
