"""The ``evaluate`` stage: paper Table 1 on the test split (DESIGN 9).

    python -m model.evaluate [--params FILE] [--max-clips N] [-v]
    accelerate launch --num_processes N -m model.evaluate          # clips split across ranks, metrics gathered

For every clip of ``evaluate.split`` (the paper's protocol): the clip's FIRST frame is the reference, its
own audio (and the condition features extracted from it) drives the generation
(:class:`model.inference.pipeline.TalkingFacePipeline` from the newest checkpoints, ``inference``
params). The generated video is written with its audio (``videos/<key>.mp4``) and measured against the
ground-truth clip exactly as ``python -m model.metrics`` measures any method's videos
(:func:`model.metrics.cli.collect`: same decoding, alignment and metric code); FID/FVD's ground-truth side
comes from the cached reference statistics (:mod:`model.evaluation.reference`) when they match.

Outputs in ``evaluate.out_dir`` (``reports/eval``): ``metrics.json`` (flat numbers: DVC metrics),
``per_clip.parquet``, ``protocol.json`` (every choice of generation and measurement, the judges'
folders, the counts, the unavailable metrics with reasons, the tiny overrides), ``table.md`` (Table 1's
shape with the paper's rows), ``index.html`` (with each training stage's curves from ``evaluate.train_dir``:
:mod:`model.evaluation.curves`) and ``videos/``.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from core import cli
from core import params as params_mod
from core.runs import beside, write_run
from core.shards import ShardParams
from model.data.clips import ClipFrames, iter_clips, split_entries
from model.evaluation import report as rep
from model.evaluation.curves import curves_html
from model.evaluation.params import resolve
from model.evaluation.reference import load_reference
from model.evaluation.targets import clip_frames, write_target
from model.inference.checkpoints import CheckpointsMissing, from_checkpoints
from model.inference.video import side_by_side, write_video
from model.metrics import cli as metrics_cli
from model.metrics.video import FPS, decode

log = logging.getLogger("model.evaluate")


def _device(choice: str, accelerator: Any) -> torch.device:
    if choice == "auto":
        return accelerator.device
    return torch.device(choice)


def run(params_file: Path | str | None = None, max_clips: int | None = None) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    started = time.perf_counter()
    res = resolve(params_file)
    e, inf = res.evaluate, res.inference
    accelerator = Accelerator(cpu=e.device == "cpu")
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    device = _device(e.device, accelerator)
    loaded = from_checkpoints(inf.checkpoints, device=device, dtype=inf.dtype)
    data, pipe = loaded.data, loaded.pipeline
    shard_root = params_mod.from_dict(ShardParams, res.raw.get("shards") or {}, "shards").root
    limit = max_clips if max_clips is not None else e.max_clips
    entries = split_entries(e.split, shard_root)
    entries = entries[:limit] if limit else entries
    if not entries:
        raise FileNotFoundError(f"split {e.split!r} of {shard_root} has no clip: nothing to evaluate")
    mine = {x["key"] for x in entries[rank::world]}
    out, metrics = Path(e.out_dir), metrics_cli.parse_metrics(e.metrics)
    videos, work = out / "videos", out / ".work"
    targets = work / "target"
    if main:
        shutil.rmtree(out, ignore_errors=True)
    accelerator.wait_for_everyone()
    videos.mkdir(parents=True, exist_ok=True)
    targets.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    for clip in iter_clips(data, e.split, shard_root, keys=mine):
        n = clip_frames(clip, e.max_frames)
        write_target(clip, targets, n)
        reference = torch.from_numpy(clip.decode_frames(data.size, 1)[0]).permute(2, 0, 1).contiguous()
        start = time.perf_counter()
        gen = pipe(ClipFrames(clip, n), reference, inf, frames_per_clip=data.target_frames,
                   motion_frames=data.motion_frames, progress=main and log.isEnabledFor(logging.INFO))
        seconds = time.perf_counter() - start
        write_video(videos / f"{clip.key}.mp4", gen.frames, fps=round(clip.fps), audio=clip.write_wav(work, n))
        rows.append({"clip": clip.key, "dataset": clip.dataset, "speaker": clip.entry.get("speaker"), "frames": n,
                     "clip_frames": clip.frames, "windows": gen.windows, "first_motion": gen.first_motion,
                     "generate_s": seconds})
        log.debug("%s: %d frames in %.1f s", clip.key, n, seconds)

    stats = load_reference(Path(e.reference_dir), e.split, [x["key"] for x in entries], data.size, e.max_frames,
                           e.fvd_stride, res.weights_dir)
    # one partial per dataset (Table 1 reports each test set on its own); the judges load once
    datasets = sorted({x["dataset"] for x in entries})
    judges = metrics_cli.load_judges(metrics, res.weights_dir, str(device), targets)
    parts = {d: metrics_cli.collect(videos, targets, metrics, res.weights_dir, data.size, landmarks=targets,
                                    device=str(device), fvd_stride=e.fvd_stride, judges=judges,
                                    names={x["key"] for x in entries if x["dataset"] == d and x["key"] in mine},
                                    skip_target=set(stats[d]) if stats else set())
             for d in datasets}
    gathered = gather_object([{"parts": {d: p.portable() for d, p in parts.items()}, "rows": rows}])
    if not main:
        accelerator.wait_for_everyone()
        return {}
    rows = sorted((r for g in gathered for r in g["rows"]), key=lambda r: r["clip"])
    finish = lambda part: metrics_cli.finalize(part, metrics, videos, targets, res.weights_dir, data.size, str(device),  # noqa: E731
                                               e.fvd_stride)
    per_dataset = {}
    for d in datasets:
        parts[d].merge([g["parts"][d] for g in gathered[1:]])  # the other ranks' sums, added once
        if stats:
            metrics_cli.use_reference(parts[d], stats[d])
        per_dataset[d] = finish(parts[d])
    report = per_dataset[datasets[0]]
    if len(datasets) > 1:  # every dataset's sums together (ground truth included)
        report = finish(parts[datasets[0]].merge([parts[d].portable() for d in datasets[1:]]))
    for row in rows:
        row.update({k: v for k, v in report["per_video"].get(row["clip"], {}).items() if k not in row})
    # generation seconds describe this execution (machine, load), not the result: the run record keeps them
    generated = {r["clip"]: (r.pop("generate_s"), r["frames"]) for r in rows}
    seconds, video_s = sum(g for g, _ in generated.values()), sum(n / FPS for _, n in generated.values())
    write_run(beside(out), "evaluate", {"seconds": round(time.perf_counter() - started, 3), "generate_s": round(seconds, 3),
                                "seconds_per_generated_second": round(seconds / video_s, 3) if video_s else None,
                                "generate_s_per_clip": {k: round(g, 3) for k, (g, _) in sorted(generated.items())}})
    rep.write_json(out / "metrics.json", rep.flat_metrics(report, loaded.tiny))
    rep.write_per_clip(out / "per_clip.parquet", rows)
    rep.write_plot_csv(out / "plots" / "per_clip.csv", rows)
    protocol = _protocol(report, res, loaded, stats is not None, world, rows)
    protocol["per_dataset"] = {d: {"metrics": r["metrics"], "counts": r["counts"], "unavailable": r["unavailable"]}
                               for d, r in per_dataset.items()}
    rep.write_json(out / "protocol.json", protocol)
    table = rep.table_markdown(report, per_dataset, f"split {e.split}", loaded.tiny)
    (out / "table.md").write_text(table)
    shown = []
    for row in rows[:e.show]:  # the measured files themselves: the generated video and the ground truth written above
        name = row["clip"]
        both = side_by_side(decode(videos / f"{name}.mp4", data.size), decode(targets / f"{name}.mp4", data.size))
        shown.append((name, write_video(videos / f"{name}.side_by_side.mp4", both, fps=FPS, audio=targets / f"{name}.mp4")))
    (out / "index.html").write_text(rep.index_html(table, shown, loaded.tiny, curves_html(Path(e.train_dir))))
    shutil.rmtree(work, ignore_errors=True)
    accelerator.wait_for_everyone()
    print("\n".join(rep.summary_lines(report, out, e.split)))  # the full table: table.md, index.html
    return report


def _protocol(report: dict, res: Any, loaded: Any, cached: bool, world: int, rows: list[dict]) -> dict:
    inf, data = res.inference, loaded.data
    return {
        "tiny": loaded.tiny, "tiny_overrides": res.tiny_overrides, "split": res.evaluate.split, "ranks": world,
        "generation": {
            "reference": "the clip's first frame (paper protocol)", "audio": "the clip's own audio and its extracted features",
            "frames": "whole clip" if not res.evaluate.max_frames else f"the first {res.evaluate.max_frames} frames",
            "sampler": f"DDIM, {inf.steps} steps, eta {inf.eta}, from the stage-2 run's scheduler config",
            "guidance": inf.guidance.describe(), "window_frames": data.target_frames, "motion_frames": data.motion_frames,
            "first_window_motion": sorted({r["first_motion"] for r in rows}), "seed": f"per clip: sha256(seed={inf.seed}:key)",
            "dtype": inf.dtype, "size": data.size, "components": loaded.sources,
            "video": "H.264 yuv420p crf 18, 25 fps, AAC audio (the driving audio)",
        },
        "measurement": report["protocol"],
        "fid_fvd_ground_truth": "cached reference statistics" if cached else "computed from the ground-truth videos",
        "judges": report["judge_folders"], "tiny_judges": report["tiny"], "counts": report["counts"],
        "unavailable": report["unavailable"], "metrics": report["metrics"], "details": report["details"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m model.evaluate", __doc__)
    ap.add_argument("--max-clips", type=int, default=None, help="evaluate only the first N clips (default evaluate.max_clips)")
    return cli.run(ap, argv, lambda a: run(a.params, a.max_clips), user_errors=(CheckpointsMissing,))


if __name__ == "__main__":
    raise SystemExit(main())
