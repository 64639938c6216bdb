"""A second ``dvc repro`` with nothing changed (goal: under 3 s).

    python -m bench.noop_repro [--reps 3]

Copies the repository (the files ``git ls-files`` lists plus untracked, not ignored ones) into a
temp folder, ``git init`` there, runs ``dvc repro`` once (weights, the sample dataset, its ingest,
the report) and then times ``dvc repro`` again ``--reps`` times (every stage up to date). For
scale, the same run also times ``dvc status`` and ``dvc version`` (DVC's own start-up).
Commands run with the interpreter's folder (the project venv) first on PATH.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, bin_dir, child_env, finish, log, median, temp_folder

NAME = "noop_repro"


def copy_repo(dest: Path) -> int:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    n = 0
    for rel in sorted({r for r in listed if r}):
        src = REPO / rel
        if not src.is_file() or rel.startswith("bench/results/"):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
        n += 1
    return n


def timed_run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    goal = 3.0
    dvc = str(bin_dir() / "dvc")
    with temp_folder("noop") as tmp:
        repo = tmp / "repo"
        repo.mkdir()
        files = copy_repo(repo)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        if not (repo / ".dvc").is_dir():
            subprocess.run([dvc, "init", "-q"], cwd=repo, check=True, env=child_env())
        first_s, first_out = timed_run([dvc, "repro"], repo)
        log(f"{NAME}: first dvc repro: {first_s:.1f} s")
        noop, status, version = [], [], []
        for rep in range(args.reps):
            s, out = timed_run([dvc, "repro"], repo)
            if "Running stage" in out:
                raise RuntimeError(f"the second dvc repro ran a stage:\n{out[-3000:]}")
            noop.append(s)
            status.append(timed_run([dvc, "status"], repo)[0])
            version.append(timed_run([dvc, "version"], repo)[0])
            log(f"{NAME}: rep {rep + 1}/{args.reps}: no-op dvc repro {s:.2f} s")
    med = median(noop)
    return finish(NAME, {
        "goal": f"no-op dvc repro < {goal} s",
        "goal_met": med < goal,
        "noop_repro_s_median": med,
        "noop_repro_s_all": noop,
        "dvc_status_s_median": median(status),
        "dvc_version_s_median": median(version),
        "first_repro_s": first_s,
        "files_copied": files,
        "reps": args.reps,
    })


if __name__ == "__main__":
    main()
