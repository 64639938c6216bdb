"""A second ``dvc repro`` with nothing changed (goal: under 2 s).

    python -m bench.noop_repro [--reps 3] [--in-place]

Copies the repository (the files ``git ls-files`` lists plus untracked, not ignored ones) into a
temp folder, ``git init`` and one commit there (dvclive, which training logs with, reads HEAD), runs ``dvc repro`` once (the whole pipeline, training and
evaluation included) and then times ``dvc repro`` again ``--reps`` times (every stage up to date).
``--in-place`` skips the copy and times the no-op in this checkout. For scale, the same run also
times ``dvc status`` and ``dvc version`` (DVC's own start-up).
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
    ap.add_argument("--in-place", action="store_true",
                    help="time the no-op in this checkout (every stage must be up to date) instead of a fresh copy "
                         "(whose first repro trains and evaluates: minutes)")
    args = ap.parse_args(argv)
    goal = 2.0
    dvc = str(bin_dir() / "dvc")
    with temp_folder("noop") as tmp:
        files, first_s = 0, None
        if args.in_place:
            repo = REPO
        else:
            repo = tmp / "repo"
            repo.mkdir()
            files = copy_repo(repo)
            subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
            if not (repo / ".dvc").is_dir():
                subprocess.run([dvc, "init", "-q"], cwd=repo, check=True, env=child_env())
            # a clone has a commit: the training stages log with dvclive, which reads HEAD
            who = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
            subprocess.run(["git", *who, "add", "-A"], cwd=repo, check=True)
            subprocess.run(["git", *who, "commit", "-q", "-m", "copy"], cwd=repo, check=True)
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
        "files_copied": files, "in_place": args.in_place,
        "reps": args.reps,
    })


if __name__ == "__main__":
    main()
