"""``ingest@<dataset>``: raw videos -> 25 fps / 16 kHz clip shards with a manifest and rejects.

    python -m pipeline.ingest <dataset> [--local]

Steps (each cached per clip, DESIGN 3.3): ``probe`` -> ``audio`` (decode, align, loudness) ->
``segment`` (3-20 s clips at silences) -> ``face`` (MediaPipe face count, landmarks, head pose,
crop boxes; scores) -> ``face_filter`` (thresholds on those scores: ``no_face``, ``multi_face``,
``face_too_small``, ``profile``) -> ``encode`` (25 fps H.264 of the 512x512 face crop + 16 kHz wav;
the whole frame when ``steps.face.enabled`` is false). Writes
``shards/clips/<dataset>/`` (tars, ``manifest.parquet``, ``rejects.parquet``) and
``reports/ingest/<dataset>.json``. Every source or clip that does not make it is a rejects row
(a listed file that does not exist: ``missing_file``; a listed time range that is not one: ``bad_range``).
A source listed with a time range (``SourceVideo.range``) is its own record, cut by seeking: every
step reads only that part of the file.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import cli, params
from core.storage import check_writable, is_transient, storage_error
from pipeline import datasets, source_check
from pipeline.cache import Cache, CacheParams
from core.clip import Clip, range_tag, slug
from pipeline.runner import Runner, RunnerParams
from core.shards import REJECTS, ShardLayout, Reject, ShardParams, write_clip_shards
from pipeline.plots import write_ingest_plots
from core.runs import runs_dir, write_run
from pipeline.stats import StageStats, both, check_error_share, metrics, write_json, write_metrics
from pipeline.steps import Step
from pipeline.steps.audio import AudioParams, DecodeAudio
from pipeline.steps.encode import Encode, EncodeParams
from pipeline.steps.face import Face, FaceParams
from pipeline.steps.face_filter import FaceFilter, FaceFilterParams
from pipeline.steps.probe import Probe, ProbeParams
from pipeline.steps.segment import Segment, SegmentParams

log = logging.getLogger("pipeline.ingest")


@dataclass(frozen=True)
class IngestSteps:
    """``steps`` section: one entry per ingest step, in the order they run."""

    probe: ProbeParams = field(default_factory=ProbeParams)
    audio: AudioParams = field(default_factory=AudioParams)
    segment: SegmentParams = field(default_factory=SegmentParams)
    face: FaceParams = field(default_factory=FaceParams)
    face_filter: FaceFilterParams = field(default_factory=FaceFilterParams)
    encode: EncodeParams = field(default_factory=EncodeParams)

    def build(self) -> list[Step]:
        if self.segment.fps != self.encode.fps:
            raise params.ParamsError(f"steps.segment.fps ({self.segment.fps}) and steps.encode.fps ({self.encode.fps}) must match")
        face = [Face(self.face, fps=self.segment.fps), FaceFilter(self.face_filter)] if self.face.enabled else []
        return [Probe(self.probe), DecodeAudio(self.audio), Segment(self.segment), *face, Encode(self.encode)]


def source_records(name: str, sources: list[datasets.SourceVideo], cache: Cache) -> tuple[list[Clip], list[Reject]]:
    """One record per raw video (hashed); a file that cannot even be read is a reject."""
    items, rejects = [], []
    for src in sources:
        if src.problem:  # a dangling symlink, a FIFO, a folder, a link out of raw_dir (pipeline.datasets)
            rejects.append(Reject(name, src.rel, "", "list", *src.problem))
            continue
        if src.range is not None and not 0 <= src.range[0] < src.range[1]:
            rejects.append(Reject(name, src.rel, "", "list", "bad_range", f"{src.rel}: listed time range {src.range[0]:g}-{src.range[1]:g} s is not a range (need 0 <= start < end)"))
            continue
        try:
            digest = cache.source_hash(src.path)
        except FileNotFoundError:
            rejects.append(Reject(name, src.rel, "", "hash", "missing_file", f"{src.path}: listed by the dataset but not found"))
            continue
        except OSError as e:
            if is_transient(e):  # a disk or permission problem, not the file's: stop, naming it
                raise storage_error(e, f"ingest@{name}: reading {src.rel}", src.path) from e
            rejects.append(Reject(name, src.rel, "", "hash", "unreadable", f"{src.rel}: {e.strerror or e}"))
            continue
        stem = src.rel.rsplit(".", 1)[0]
        # A listed time range: its own record (key and cache entries), cut from the source by seeking.
        span = {"meta": {"range": {"start": float(src.range[0]), "end": float(src.range[1])}}} if src.range else {}
        tag = f"__{range_tag(src.range)}" if src.range else ""
        items.append(Clip(key=f"{slug(name)}__{slug(stem)}{tag}", dataset=name, source=str(src.path), source_rel=src.rel, source_hash=digest, **span))
    return items, rejects


def run(name: str, root: Path = Path("."), local: bool | None = None, params_file: Path | None = None) -> dict[str, Any]:
    """Ingest dataset ``name``; returns the stage report."""
    t0 = time.perf_counter()
    data = params.read_yaml(params_file)
    where = str(params_file or params.params_path())
    entry = params.section(data, f"datasets.{name}", where)
    steps = params.load(IngestSteps, "steps", where, data).build()
    runner_params = params.load(RunnerParams, "runner", where, data)
    if local is not None:
        runner_params = dataclasses.replace(runner_params, local=local)
    cache_params = params.load(CacheParams, "cache", where, data)
    check_writable(cache_params.root(root), cache_params.min_free_mb, "cache.dir")  # before any compute, not after it
    cache = Cache(cache_params.root(root))
    cache.clean_tmp()
    shard_params = params.load(ShardParams, "shards", where, data)

    sources = datasets.list_sources(name, entry, root, where)
    source_meta = {(s.rel, s.range): s.meta for s in sources}
    layout = ShardLayout.from_params(shard_params, root)
    check_writable(layout.clips_root, shard_params.min_free_mb, "shards.root")
    items, rejects = source_records(name, sources, cache)
    items, twins = source_check.distinct(name, items)  # duplicate_source, key_collision
    rejects += twins
    stats = StageStats("ingest", name, inputs=len(sources))
    stats.dropped.update(r.reason for r in rejects)
    log.info("ingest %s: %d source videos from %s", name, len(sources), entry.get("raw_dir"))

    with Runner(runner_params, cache, stage=f"ingest@{name}") as runner:
        # Each source streams through the steps (no barrier between steps), see Runner.chain.
        for step, outcome in zip(steps, runner.chain(steps, items, desc=f"ingest@{name}")):
            stats.add(outcome)
            for clip, drop in outcome.drops:
                is_clip = clip.duration is not None
                rejects.append(Reject(name, clip.source_rel, clip.key if is_clip else "", step.name, drop.reason, drop.message))
            items = outcome.kept
        runner_mode = runner.mode

    clips = [c.evolve(meta={"source": source_meta.get((c.source_rel, _range_of(c)), {})}) for c in items]
    write_clip_shards(layout.clips(name), clips, rejects, shard_params)
    seconds = time.perf_counter() - t0
    report = stats.to_json(kept=len(clips))
    report["hours_kept"] = round(sum(c.duration or 0 for c in clips) / 3600, 4)
    write_json(root / "reports" / "ingest" / f"{name}.json", report)
    write_metrics(root, f"ingest-{name}", metrics(len(sources), len(clips), report["dropped"], report["hours_kept"], False))
    run_record = stats.run_record(len(clips), seconds, runner_mode)
    write_run(runs_dir(root), f"ingest-{name}", run_record)
    write_ingest_plots(root / "reports" / "plots" / "ingest" / name, [c.duration or 0.0 for c in clips], report["dropped_by_reason"])
    log.info("ingest %s: %d clips kept, %d rejects in %.1f s (%s; %d computed, %d cached)", name, len(clips), len(rejects), seconds,
             ", ".join(f"{k} {v['in']}->{v['out']}" for k, v in report["steps"].items()), run_record["computed"], run_record["cached"])
    check_error_share(f"ingest@{name}", rejects, len(clips) + len(rejects), runner_params.max_error_fraction,
                      layout.clips(name) / REJECTS)
    return both(report, run_record)


def _range_of(clip: Clip) -> tuple[float, float] | None:
    r = clip.meta.get("range")
    return (r["start"], r["end"]) if r else None


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m pipeline.ingest", __doc__)
    ap.add_argument("dataset", help="a key of `datasets` in params.yaml")
    ap.add_argument("--local", action="store_true", default=None, help="run in-process, no worker processes or Ray (debugging)")
    return cli.run(ap, argv, lambda a: run(a.dataset, local=a.local, params_file=a.params), (datasets.DatasetError,))


if __name__ == "__main__":
    sys.exit(main())
