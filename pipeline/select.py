"""``select``: thresholds on stored scores and identity-disjoint train/val/test splits (DESIGN 2, 3.2).

    python -m pipeline.select

Reads, for every dataset in ``params.yaml``, the clip manifest ``shards/clips/<ds>/manifest.parquet``
(``score_*`` columns of ingest: face scores, pose) and every feature sidecar manifest
``shards/features/<f>/<ds>/manifest.parquet`` (``status`` and ``score_<f>_*`` columns, e.g.
``score_vocals_music_ratio``, ``score_speech_ratio``). No model runs here: changing a threshold
re-runs only this stage, in seconds.

Face thresholds have one home, ``steps.face_filter`` (the paper filters extreme side profiles and
multi-speaker videos, section 4): ingest's face filter drops clips by them (those clips are not in
the shards), and ``select`` applies the same values to the stored scores again, so shards written
under other thresholds (an older run, a shared shard set) are held to the current ones. Loosening
them brings clips back by re-running only the cheap ``face_filter`` ingest step.

Checks, first failing one wins (reason in brackets): duration (``too_short``, ``too_long``),
face (``no_face``, ``multi_face``, ``face_too_small``, ``profile`` for yaw or pitch), required
features (``feature:<f>:<status>`` when a feature in ``required_features`` is not ``ok`` for the
clip), music ratio (``music``), speech ratio (``no_speech``), the ground truth's SyncNet confidence
and |offset| (``out_of_sync``), then the generic ``scores`` map
(``score:<column>``). A threshold whose score column is absent or empty for a clip (the step or
feature did not run or was disabled) is not applied; ``select.json`` lists such thresholds as
``unchecked``. Scores of a feature computed with tiny stand-in weights are not applied either
(``tiny_scores: ignore``, the default; listed as ``tiny_scores_ignored``): random weights measure
nothing, and the demo would otherwise drop every clip on a random music ratio.

Splits: every clip of a speaker goes to the same split, chosen by a hash of
``(seed, dataset, speaker)`` against the ratios, so splits are deterministic, independent of clip
order, and adding a speaker never moves another one. The speaker is the adapter's
``meta["speaker"]`` (hdtf, mead, folder with ``speaker_from_dir``, sample), else the source video
(the manifest's ``speaker`` column already falls back to it). A dataset with ``test_only: true``
in its ``datasets`` entry goes entirely to test (the paper evaluates on held-out HDTF and MEAD
videos). A speaker id an adapter marks global (``meta["speaker_scope"] = "global"``: a metadata
table's ``global_speaker: true``) names one person across datasets: its split is hashed from
``(seed, speaker)`` alone, so that person lands in one split in every dataset, and a global speaker
of a test-only dataset goes to test in every dataset (a held-out identity is never trained on).

Outputs: ``shards/splits/{train,val,test}.jsonl`` (one line per clip: dataset, key, shard, frames,
speaker), ``shards/splits/decisions.parquet`` (every clip: dataset, key, shard, source, speaker,
frames, duration, split or reason, message) and ``reports/select/select.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import datasets as datasets_mod
from core import cli, params
from core.shards import MANIFEST, SPLITS, AtomicDir, ShardLayout, ShardParams, iter_samples, read_manifest
from pipeline.plots import collect_scores, write_select_plots
from core.runs import runs_dir, write_run
from pipeline.stats import metrics, write_json, write_metrics
from pipeline.steps.face_filter import FACE_TOO_SMALL, MULTI_FACE, NO_FACE, PROFILE, FaceFilterParams

log = logging.getLogger("pipeline.select")



@dataclass(frozen=True)
class Range:
    """Bounds of one score (either may be null: unbounded)."""

    min: Optional[float] = None
    max: Optional[float] = None


@dataclass(frozen=True)
class SelectParams:
    """``select`` section of params.yaml (null switches a threshold off)."""

    seed: int = 0
    val_fraction: float = 0.05  # of the speakers of non-test-only datasets
    test_fraction: float = 0.05
    min_duration: Optional[float] = 3.0  # seconds
    max_duration: Optional[float] = 20.0
    max_music_ratio: Optional[float] = 0.5  # score_vocals_music_ratio
    min_speech_ratio: Optional[float] = 0.3  # score_speech_ratio
    # the ground truth's own SyncNet confidence and |offset| (features.sync): an out-of-sync source is a classic
    # bad training clip. Applied only to scores from real weights (tiny_scores); 3 is the usual floor of
    # talking-head data filtering (LatentSync keeps clips above 3), HDTF sits around 7-9.
    min_sync_confidence: Optional[float] = 3.0  # score_sync_confidence
    max_sync_offset: Optional[float] = 3.0  # score_sync_offset_abs (frames at 25 fps)
    scores: dict[str, Range] = field(default_factory=dict)  # any other column: {score_x: {min, max}}
    required_features: list[str] = field(default_factory=list)  # a clip whose sidecar is not ok is dropped
    # Scores computed with tiny (randomly initialised) stand-in weights measure nothing: "ignore" leaves
    # their thresholds unapplied (listed in select.json as tiny_scores_ignored); "apply" uses them anyway.
    tiny_scores: Literal["ignore", "apply"] = "ignore"

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction > 1.0:
            raise ValueError("val_fraction + test_fraction must be at most 1")


def _checks(p: SelectParams, face: FaceFilterParams) -> list[tuple[str, str, Optional[float], Optional[float]]]:
    """``(reason, column, min, max)`` in the order they are applied (the feature checks sit between).
    The face thresholds are ``steps.face_filter``'s, as ingest's face filter applies them."""
    return [
        ("too_short", "duration", p.min_duration, None),
        ("too_long", "duration", None, p.max_duration),
        (NO_FACE, "score_face_fraction", face.min_face_fraction, None),
        (MULTI_FACE, "score_multi_face_fraction", None, face.max_multi_face_fraction),
        (FACE_TOO_SMALL, "score_face_px", face.min_face_px, None),
        (FACE_TOO_SMALL, "score_face_size", face.min_face_size or None, None),  # 0: off
        (PROFILE, "score_yaw_abs_median", None, face.max_yaw),
        (PROFILE, "score_pitch_abs_median", None, face.max_pitch),
    ]


def _late_checks(p: SelectParams) -> list[tuple[str, str, Optional[float], Optional[float]]]:
    out = [
        ("music", "score_vocals_music_ratio", None, p.max_music_ratio),
        ("no_speech", "score_speech_ratio", p.min_speech_ratio, None),
        ("out_of_sync", "score_sync_confidence", p.min_sync_confidence, None),
        ("out_of_sync", "score_sync_offset_abs", None, p.max_sync_offset),
    ]
    out += [(f"score:{col}", col, r.min, r.max) for col, r in sorted(p.scores.items())]
    return out


GLOBAL = "*"  # the namespace of global speaker ids (no dataset can be named "*")


def speaker_of(clip: dict[str, Any], dataset: str) -> tuple[str, str]:
    """``(namespace, speaker)`` of a manifest row: ``(GLOBAL, id)`` for a global speaker id, else ``(dataset, id)``."""
    speaker = str(clip.get("speaker") or clip.get("source") or clip["key"])
    try:
        scope = json.loads(clip.get("source_meta") or "{}").get("speaker_scope")
    except (ValueError, AttributeError):
        scope = None
    return (GLOBAL if scope == "global" else dataset), speaker


def split_of(seed: int, dataset: str, speaker: str, val_fraction: float, test_fraction: float) -> str:
    """The split of a speaker: a uniform number from sha256(seed, dataset, speaker) against the ratios."""
    digest = hashlib.sha256(f"{seed}\0{dataset}\0{speaker}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def _value(row: dict[str, Any], column: str) -> Optional[float]:
    v = row.get(column)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def read_dataset(layout: ShardLayout, dataset: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """Clip manifest rows and ``{feature: {key: sidecar row}}`` of one dataset."""
    clip_dir = layout.clips(dataset)
    if not (clip_dir / MANIFEST).is_file():
        raise FileNotFoundError(f"{clip_dir}/{MANIFEST} not found: run `dvc repro ingest@{dataset}` first")
    clips = read_manifest(clip_dir).to_pylist()
    features: dict[str, dict[str, dict[str, Any]]] = {}
    for feature, folder in layout.sidecars(dataset).items():
        features[feature] = {r["key"]: r for r in read_manifest(folder).to_pylist()}
    return clips, features


def tiny_features(layout: ShardLayout, dataset: str, features: list[str]) -> list[str]:
    """The features whose sidecar for ``dataset`` was computed with tiny stand-in weights (its first
    computed json says ``"tiny": true``; every json of a sidecar shares the provenance)."""
    out = []
    for feature in features:
        for sample in iter_samples(layout.feature(feature, dataset)):
            body = json.loads(sample["json"])
            if body.get("status") == "disabled":
                break
            if "tiny" in body:
                if body["tiny"]:
                    out.append(feature)
                break
    return out


def decide(p: SelectParams, dataset: str, test_only: bool, clips: list[dict[str, Any]],
           features: dict[str, dict[str, dict[str, Any]]], checked: set[str],
           face: FaceFilterParams = FaceFilterParams(), held_out: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """One decision row per clip (``split`` set and ``reason`` empty when kept). ``checked``
    collects the columns a threshold was applied to; ``held_out``: the global speakers of test-only
    datasets (test here too)."""
    rows = []
    for clip in clips:
        merged = dict(clip)
        for rows_by_key in features.values():
            side = rows_by_key.get(clip["key"], {})
            merged.update({k: v for k, v in side.items() if k.startswith("score_")})
        reason, message = _first_failure(p, face, merged, clip["key"], features, checked)
        space, speaker = speaker_of(clip, dataset)
        held = test_only or (space == GLOBAL and speaker in held_out)
        split = "" if reason else ("test" if held else split_of(p.seed, space, speaker, p.val_fraction, p.test_fraction))
        rows.append({
            "dataset": dataset, "key": clip["key"], "shard": clip["shard"], "source": clip.get("source", ""),
            "speaker": speaker, "frames": int(clip.get("frames") or 0), "duration": float(clip.get("duration") or 0.0),
            "split": split, "reason": reason, "message": message, "space": space,
        })
    return rows


def _first_failure(p: SelectParams, face: FaceFilterParams, row: dict[str, Any], key: str, features: dict[str, dict[str, dict[str, Any]]],
                   checked: set[str]) -> tuple[str, str]:
    def bounds(checks):
        for reason, column, lo, hi in checks:
            if lo is None and hi is None:
                continue
            v = _value(row, column)
            if v is None:
                continue
            checked.add(column)
            if lo is not None and v < lo:
                return reason, f"{column} {v:.4g} < min {lo:g}"
            if hi is not None and v > hi:
                return reason, f"{column} {v:.4g} > max {hi:g}"
        return None

    failed = bounds(_checks(p, face))
    if failed:
        return failed
    for feature in p.required_features:
        side = features.get(feature, {}).get(key)
        status = side.get("status") if side else "missing"
        if status != "ok":
            return f"feature:{feature}:{status}", f"features.{feature} is {status} for this clip (select.required_features)"
    return bounds(_late_checks(p)) or ("", "")


def _has(data: dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def run(root: Path = Path("."), params_file: Path | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = params.read_yaml(params_file or root / "params.yaml")
    p = params.load(SelectParams, "select", data=data)
    face = params.load(FaceFilterParams, "steps.face_filter", data=data) if _has(data, "steps.face_filter") else FaceFilterParams()
    layout = ShardLayout.from_params(params.load(ShardParams, "shards", data=data), root)
    rows: list[dict[str, Any]] = []
    checked: set[str] = set()
    ignored_tiny: set[str] = set()
    held_out = held_out_speakers(layout, data.get("datasets") or {})
    scores: dict[str, list[float]] = {}  # "<dataset>.<score>" -> every stored value (the score plots)
    for name, raw in sorted((data.get("datasets") or {}).items()):
        common, _ = datasets_mod.parse(name, raw)
        clips, features = read_dataset(layout, name)
        for rows_of in (clips, *(list(f.values()) for f in features.values())):
            collect_scores(scores, name, rows_of)
        missing = [f for f in p.required_features if f not in features]
        if missing:
            raise FileNotFoundError(f"select.required_features: {missing[0]} has no sidecar for dataset {name} "
                                    f"(run `dvc repro extract@{missing[0]}-{name}` or remove it from the list)")
        if p.tiny_scores == "ignore":
            tiny = tiny_features(layout, name, sorted(features))
            if tiny:  # one line for all of them
                log.warning("select: %s: %s computed with tiny stand-in weights; their score thresholds are not applied "
                            "(select.tiny_scores: apply to use them)", name, ", ".join(tiny))
            for feature in tiny:
                ignored_tiny.add(feature)
                features[feature] = {k: {c: v for c, v in r.items() if not c.startswith("score_")} for k, r in features[feature].items()}
        rows += decide(p, name, common.test_only, clips, features, checked, face, held_out)

    with AtomicDir(layout.splits) as tmp:
        for split in SPLITS:
            with open(tmp / layout.split(split).name, "w", encoding="utf-8") as f:
                for r in rows:
                    if r["split"] == split:
                        f.write(json.dumps({k: r[k] for k in ("dataset", "key", "shard", "frames", "speaker")}, sort_keys=True) + "\n")
        schema = pa.schema([("dataset", pa.string()), ("key", pa.string()), ("shard", pa.string()), ("source", pa.string()),
                            ("speaker", pa.string()), ("frames", pa.int64()), ("duration", pa.float64()),
                            ("split", pa.string()), ("reason", pa.string()), ("message", pa.string())])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp / layout.decisions.name)

    report = summary(rows, p, checked, face)
    report["tiny_scores_ignored"] = sorted(ignored_tiny)
    write_json(root / "reports" / "select" / "select.json", report)
    write_metrics(root, "select", metrics(len(rows), report["kept"], report["dropped"],
                                          sum(s["hours"] for s in report["splits"].values()), bool(ignored_tiny)))
    seconds = time.perf_counter() - t0
    write_run(runs_dir(root), "select", {"seconds": round(seconds, 3), "clips_per_s": round(report["kept"] / seconds, 3) if seconds > 0 else None})
    write_select_plots(root / "reports" / "plots" / "select", report, scores)
    return report


def held_out_speakers(layout: ShardLayout, entries: dict[str, Any]) -> frozenset[str]:
    """The global speaker ids of every test-only dataset (read from their clip manifests)."""
    out = set()
    for name, raw in sorted(entries.items()):
        common, _ = datasets_mod.parse(name, raw)
        if common.test_only and (layout.clips(name) / MANIFEST).is_file():
            for clip in read_manifest(layout.clips(name)).to_pylist():
                space, speaker = speaker_of(clip, name)
                if space == GLOBAL:
                    out.add(speaker)
    return frozenset(out)


def summary(rows: list[dict[str, Any]], p: SelectParams, checked: set[str], face: FaceFilterParams = FaceFilterParams()) -> dict[str, Any]:
    """``select.json``: kept clips, hours and speakers per split, dropped clips by reason."""
    kept = {s: [r for r in rows if r["split"] == s] for s in SPLITS}
    dropped: dict[str, int] = {}
    for r in rows:
        if r["reason"]:
            dropped[r["reason"]] = dropped.get(r["reason"], 0) + 1
    columns = {c for _, c, lo, hi in _checks(p, face) + _late_checks(p) if lo is not None or hi is not None}
    return {
        "stage": "select", "inputs": len(rows), "kept": sum(len(v) for v in kept.values()),
        "dropped": sum(dropped.values()), "dropped_by_reason": dict(sorted(dropped.items())),
        "splits": {s: {"clips": len(v), "hours": round(sum(r["duration"] for r in v) / 3600, 4),
                       "speakers": len({(r.get("space", r["dataset"]), r["speaker"]) for r in v})} for s, v in kept.items()},
        "unchecked": sorted(columns - checked),
    }


def main(argv: list[str] | None = None) -> int:
    def body(args):
        report = run(params_file=args.params)
        log.info("select: %d kept (%s), %d dropped %s", report["kept"],
                 ", ".join(f"{s} {v['clips']}" for s, v in report["splits"].items()), report["dropped"], report["dropped_by_reason"])

    return cli.run(cli.parser("python -m pipeline.select", __doc__), argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
