"""Adding one video to an ingested dataset: re-ingest time vs ingesting that clip alone (goal <= 1.3x).

    python -m bench.add_one_clip [--clips 50] [--unique 10] [--reps 3]

A ``folder`` dataset of ``--clips`` short talking clips (4 s, 256 px, varied fps and sample
rates; ``--unique`` distinct renders, copied under distinct names to make up the count: each file
is a source of its own to the pipeline) is ingested once on a local Ray (``runner.num_cpus: 2``). Then, per repetition, one new
video is put in the dataset folder (replacing the previous repetition's new video, so the dataset
always holds ``clips + 1`` videos) and the dataset is re-ingested; side by side, the same new video
is ingested alone into a fresh cache. The order of the two alternates between repetitions. Also
reported: the steps computed vs cached in the re-ingest (from the stage report), and an unchanged
re-run of the whole dataset (every step cached, no Ray). The ingest runs with the steps as
configured in params.yaml (face steps included when enabled there).
"""

from __future__ import annotations

import argparse
import shutil
import time
from typing import Any

from bench.common import (ClipSpec, describe_inputs, finish, has_face_step, log, median, render, render_copies, run_ingest, step_summary,
                          temp_folder, varied_specs, write_params)

NAME = "add_one_clip"


def _summary(out: dict[str, Any]) -> dict[str, Any]:
    steps = step_summary(out["report"])
    return {
        "wall_s": out["wall_s"], "run_s": out["run_s"], "kept": out["report"]["kept"],
        "ray_init_s": out["ray_init_s"], "ray_first_result_s": out["ray_first_result_s"], "ray_close_s": out["ray_close_s"],
        # the steps overlap (ingest streams clips through them): their seconds are worker seconds, summed
        "step_worker_s": sum(s["s"] for s in steps.values()),
        "hash_s": out["hash_s"], "shards_s": out["shards_s"], "shard_bytes": out["shard_bytes"],
        "other_load_cpus": out["cpu"].get("other_cpus"),
        "steps": steps,
        "computed": sum(s["computed"] for s in steps.values()), "cached": sum(s["cached"] for s in steps.values()),
        "dropped_by_reason": out["report"]["dropped_by_reason"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--unique", type=int, default=10, help="distinct renders the dataset's files are copied from")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args(argv)
    goal = 1.3
    with temp_folder("add") as tmp:
        raw, extra = tmp / "raw", tmp / "extra"
        t = time.perf_counter()
        render_copies(varied_specs(min(args.unique, args.clips), (4.0,), 256, prefix="clip"), args.clips, raw, tmp / "unique")
        new = [ClipSpec(f"new_{k:03d}.mp4", 4.0, fps=("30", "24", "50")[k % 3], sample_rate=(48000, 44100)[k % 2],
                        size=256, speaker=("spk_b", "spk_c", "spk_a")[k % 3], seed=1000 + k) for k in range(args.reps)]
        render(new, extra)
        log(f"{NAME}: rendered {min(args.unique, args.clips) + args.reps} clips in {time.perf_counter() - t:.1f} s")
        inputs = describe_inputs(raw)

        root = tmp / "main"
        root.mkdir()
        params = write_params(root, raw, num_cpus=args.num_cpus, temp_dir=tmp / "ray")
        first = _summary(run_ingest(root, params))
        log(f"{NAME}: first ingest of {args.clips} clips: {first['wall_s']:.1f} s")

        unchanged = _summary(run_ingest(root, params))
        log(f"{NAME}: unchanged re-run: {unchanged['wall_s']:.2f} s")

        added, alone = [], []
        for k, spec in enumerate(new):
            for p in raw.glob("new_*"):
                p.unlink()

            def add_and_reingest() -> None:
                shutil.copy2(extra / spec.name, raw / spec.name)
                added.append(_summary(run_ingest(root, params)))
                log(f"{NAME}: rep {k + 1}: re-ingest with {spec.name}: {added[-1]['wall_s']:.2f} s")

            def ingest_alone() -> None:
                solo = tmp / f"solo-{k}"
                (solo / "raw").mkdir(parents=True)
                shutil.copy2(extra / spec.name, solo / "raw" / spec.name)
                alone.append(_summary(run_ingest(solo, write_params(solo, solo / "raw", num_cpus=args.num_cpus, temp_dir=tmp / "ray"))))
                log(f"{NAME}: rep {k + 1}: {spec.name} alone, fresh cache: {alone[-1]['wall_s']:.2f} s")
                shutil.rmtree(solo)

            for fn in ((add_and_reingest, ingest_alone) if k % 2 == 0 else (ingest_alone, add_and_reingest)):
                fn()

    med_added, med_alone = median([a["wall_s"] for a in added]), median([a["wall_s"] for a in alone])
    ratio = med_added / med_alone
    result = {
        "goal": f"re-ingest after adding one video <= {goal}x ingesting that video alone (fresh cache)",
        "goal_met": ratio <= goal,
        "ratio_reingest_vs_alone": ratio,
        "reingest_s_median": med_added,
        "alone_s_median": med_alone,
        "reingest_s_all": [a["wall_s"] for a in added],
        "alone_s_all": [a["wall_s"] for a in alone],
        "reingest_steps": added[len(added) // 2]["steps"] if added else {},
        "reingest_computed_vs_cached": [{"computed": a["computed"], "cached": a["cached"]} for a in added],
        "first_ingest": first,
        "unchanged_rerun": unchanged,
        "reingest_runs": added,
        "alone_runs": alone,
        "clips": args.clips,
        "unique_renders": min(args.unique, args.clips),
        "inputs": inputs,
        "face_steps": has_face_step(),
        "reps": args.reps,
    }
    return finish(NAME, result)


if __name__ == "__main__":
    main()
