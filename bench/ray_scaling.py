"""Worker scaling of a CPU-bound ingest: ``runner.num_cpus: 2`` vs ``1`` (goal: speed-up >= 1.7x).

    python -m bench.ray_scaling [--clips 8] [--unique 4] [--seconds 12] [--size 512] [--reps 3] [--face] [--backend auto|ray]

``--backend`` is ``runner.backend``: ``auto`` (default; local worker processes on one machine) or
``ray`` (a local Ray started by each ingest process).

Inputs: ``--clips`` talking clips (512 px, 12 s, 24/30/50/29.97 fps, 44.1/48 kHz stereo; made
from ``--unique`` distinct renders copied under distinct names), each taking about two seconds
to encode on one core. The ingest runs with ``steps.face.enabled: false``
(probe, audio, segment, whole-frame encode) unless ``--face`` is given (then as in params.yaml,
with the MediaPipe face steps and the face-crop encode). Each run is a fresh process and a fresh cache;
1-worker and 2-worker runs alternate so that other load on the machine hits both alike.

Reported per worker count (medians): wall time of the process, the time inside
``pipeline.ingest.run``, the same less Ray start-up and shutdown (``compute_s``), and each step's
seconds (ingest streams clips through its steps, so a step's seconds are its summed worker time and
their 1 -> 2 ratios stay near 1 by construction); and the speed-ups 1 -> 2 workers of each. In the same repetitions, the machine's own
ceiling is measured: the distinct files transcoded by plain single-threaded ffmpeg (the encode
step's settings), one at a time vs two at a time; other load on a shared machine lowers it below 2.
"""

from __future__ import annotations

import argparse
import shutil
import time
from typing import Any

from bench.common import (ClipSpec, describe_inputs, finish, log, median, render_copies, run_ingest, step_summary,
                          temp_folder, write_params)

from bench.ingest_vs_ffmpeg import run_ffmpeg_all

NAME = "ray_scaling"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--unique", type=int, default=4, help="distinct renders the files are copied from")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--face", action="store_true", help="run the face steps too (as configured in params.yaml)")
    ap.add_argument("--backend", choices=("auto", "processes", "ray"), default="auto", help="runner.backend")
    args = ap.parse_args(argv)
    goal = 1.7
    fps = ("24", "30", "50", "30000/1001")
    with temp_folder("scale") as tmp:
        raw = tmp / "raw"
        specs = [ClipSpec(f"talk_{i:02d}.mp4", args.seconds, fps=fps[i % len(fps)], sample_rate=(44100, 48000)[i % 2],
                          size=args.size, speaker=("spk_a", "spk_b", "spk_c")[i % 3], seed=500 + i) for i in range(args.clips)]
        t = time.perf_counter()
        unique = specs[: max(1, min(args.unique, args.clips))]
        render_copies(unique, args.clips, raw, tmp / "unique")
        log(f"{NAME}: rendered {len(unique)} clips in {time.perf_counter() - t:.1f} s")
        inputs = describe_inputs(raw)
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        ceiling: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        files = sorted((tmp / "unique").iterdir())
        for rep in range(args.reps):
            for n in ((1, 2) if rep % 2 == 0 else (2, 1)):
                ceiling[n].append(run_ffmpeg_all(files, tmp / "ff", parallel=n, threads=1))
                log(f"{NAME}: rep {rep + 1}/{args.reps} ffmpeg x{n}: {ceiling[n][-1]['elapsed_s']:.1f} s")
            for n in ((1, 2) if rep % 2 == 0 else (2, 1)):
                root = tmp / f"run-{n}-{rep}"
                root.mkdir()
                out = run_ingest(root, write_params(root, raw, num_cpus=n, temp_dir=tmp / "ray", face=True if args.face else False,
                                                    backend=args.backend))
                steps = step_summary(out["report"])
                runs[n].append({
                    "wall_s": out["wall_s"], "run_s": out["run_s"],
                    "compute_s": out["run_s"] - out["ray_init_s"] - out["ray_close_s"],
                    "ray_init_s": out["ray_init_s"], "ray_first_result_s": out["ray_first_result_s"], "ray_close_s": out["ray_close_s"],
                    "kept": out["report"]["kept"], "steps": {k: v["s"] for k, v in steps.items()},
                    "other_load_cpus": out["cpu"].get("other_cpus"),
                    "steal_cpus": out["cpu"].get("steal_cpus"), "busy_cpus": out["cpu"].get("busy_cpus"),
                    # CPU seconds of the ingest's steps: the same work for both counts, so a run where
                    # it is higher met a slower machine (frequency, shared caches, steal), not a worse schedule
                    "step_cpu_s": sum(v["s"] for v in steps.values()),
                })
                log(f"{NAME}: rep {rep + 1}/{args.reps} num_cpus={n}: {out['wall_s']:.1f} s (encode {steps['encode']['s']:.1f} s)")
                shutil.rmtree(root)

    def med(n: int, key: str) -> float:
        return median([r[key] for r in runs[n]])

    def med_step(n: int, step: str) -> float:
        return median([r["steps"][step] for r in runs[n]])

    summary = {
        n: {"wall_s": med(n, "wall_s"), "run_s": med(n, "run_s"), "compute_s": med(n, "compute_s"),
            "ray_init_s": med(n, "ray_init_s"), "ray_close_s": med(n, "ray_close_s"),
            "steps": {s: med_step(n, s) for s in runs[n][0]["steps"]}}
        for n in (1, 2)
    }
    speedup = {
        "wall": summary[1]["wall_s"] / summary[2]["wall_s"],
        "run": summary[1]["run_s"] / summary[2]["run_s"],
        "compute_without_ray_start_stop": summary[1]["compute_s"] / summary[2]["compute_s"],
        **{f"step_{s}": summary[1]["steps"][s] / summary[2]["steps"][s] for s in summary[1]["steps"] if summary[2]["steps"][s] > 0},
    }
    ceiling_speedup = median([c["elapsed_s"] for c in ceiling[1]]) / median([c["elapsed_s"] for c in ceiling[2]])
    result = {
        "goal": f"num_cpus=2 at least {goal}x faster than num_cpus=1 (wall time)",
        "goal_met": speedup["wall"] >= goal,
        "speedup_wall": speedup["wall"],
        "speedup": speedup,
        "speedup_wall_per_repetition": [a["wall_s"] / b["wall_s"] for a, b in zip(runs[1], runs[2])],
        "ceiling_ffmpeg_1_vs_2_parallel": ceiling_speedup,
        "ceiling_s": {f"x{n}": [c["elapsed_s"] for c in cs] for n, cs in ceiling.items()},
        "other_load_cpus_median": {f"num_cpus_{n}": median([r["other_load_cpus"] or 0.0 for r in runs[n]]) for n in (1, 2)},
        "median": {f"num_cpus_{n}": s for n, s in summary.items()},
        "runs": {f"num_cpus_{n}": r for n, r in runs.items()},
        "inputs": inputs,
        "unique_renders": max(1, min(args.unique, args.clips)),
        "face_steps": bool(args.face),
        "backend": args.backend,
        "reps": args.reps,
    }
    return finish(NAME, result)


if __name__ == "__main__":
    main()
