"""Run every benchmark, each in its own process: ``python -m bench.run_all [name ...]`` (``make bench``).

Prints each benchmark's JSON line, then a summary line, and writes ``bench/results/run_all.json``.
Extra arguments after ``--`` go to every benchmark (e.g. ``-- --reps 2``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import REPO, RESULTS, child_env, log, machine

BENCHMARKS = ("ingest_vs_ffmpeg", "noop_repro", "add_one_clip", "ray_scaling")

HEADLINE = {
    "ingest_vs_ffmpeg": "ratio_ingest_vs_ffmpeg_seq",
    "noop_repro": "noop_repro_s_median",
    "add_one_clip": "ratio_reingest_vs_alone",
    "ray_scaling": "speedup_wall",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    names = [a for a in (argv[: argv.index("--")] if "--" in argv else argv)] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    summary, failed = {}, []
    t0 = time.perf_counter()
    for name in names:
        log(f"run_all: {name}")
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *extra], cwd=REPO, env=child_env(PYTHONPATH=str(REPO)),
                              stdout=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - t
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            failed.append(name)
            summary[name] = {"error": f"exit status {proc.returncode}", "seconds": round(seconds, 1)}
            continue
        print(lines[-1], flush=True)
        result = json.loads(lines[-1])
        summary[name] = {"value": result.get(HEADLINE[name]), "metric": HEADLINE[name], "goal": result.get("goal"),
                         "goal_met": result.get("goal_met"), "seconds": round(seconds, 1)}
    out = {"bench": "run_all", "summary": summary, "seconds": round(time.perf_counter() - t0, 1), "machine": machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "run_all.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
