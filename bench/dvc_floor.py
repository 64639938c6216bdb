"""DVC's own floor for a no-op ``dvc repro``: a graph of the same size that runs nothing.

    python -m bench.dvc_floor [--reps 7]

Builds two throwaway DVC projects (``git init``, ``dvc init``, one commit) with as many stages as this
repository's ``dvc.lock`` has, each stage one file dependency, one DVC-cached file output and a
``cmd`` that writes it:

* ``bare``: a one-key ``params.yaml``, each stage listing that one key;
* ``same_params``: this repository's ``params.yaml``, each stage listing exactly the keys its
  namesake lists in ``dvc.lock`` (so DVC parses and walks the same file the same number of times).

After one ``dvc repro`` in each, it times the no-op ``dvc repro`` of the two and of this checkout
(``--in-place``: every stage must be up to date), alternating the three ``--reps`` times so that the
machine's drift falls on all of them alike, and ``dvc version`` (DVC's start-up) beside them. What this
checkout's no-op costs beyond ``same_params`` is what its stages' real dependencies and outputs add
(folders, links, hashes); what ``same_params`` costs is DVC's, for this many stages and this params file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from bench.common import REPO, bin_dir, child_env, finish, log, median, temp_folder
from bench.noop_repro import timed_run

NAME = "dvc_floor"


def lock_params() -> dict[str, list[str]]:
    """Every stage of this repository's ``dvc.lock`` -> the params.yaml keys it lists."""
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    return {name: sorted((entry.get("params") or {}).get("params.yaml", {})) for name, entry in lock.items()}


def make_project(root: Path, stages: dict[str, list[str]], params: str, dvc: str) -> None:
    """A DVC project with one do-nothing stage per entry of ``stages`` (name -> listed params keys)."""
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(params)
    dvc_yaml: dict[str, Any] = {"stages": {}}
    (root / "deps").mkdir()
    for i, (name, keys) in enumerate(stages.items()):
        safe = name.replace("@", "_")
        (root / "deps" / f"{safe}.txt").write_text(f"{i}\n")
        stage: dict[str, Any] = {"cmd": f"python -c \"open('outs/{safe}.txt', 'w').write('{i}')\"",
                                 "deps": [f"deps/{safe}.txt"], "outs": [f"outs/{safe}.txt"]}
        if keys:
            stage["params"] = list(keys)
        dvc_yaml["stages"][safe] = stage
    (root / "outs").mkdir()
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    env = child_env()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=root, check=True, env=env)
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")  # the same cache link types
    who = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", *who, "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", *who, "commit", "-q", "-m", "floor"], cwd=root, check=True)
    timed_run([dvc, "repro"], root)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    dvc = str(bin_dir() / "dvc")
    stages = lock_params()
    with temp_folder("dvcfloor") as tmp:
        make_project(tmp / "bare", {name: ["k"] for name in stages}, "k: 1\n", dvc)
        make_project(tmp / "same_params", stages, (REPO / "params.yaml").read_text(), dvc)
        projects = {"bare": tmp / "bare", "same_params": tmp / "same_params", "this_checkout": REPO}
        times: dict[str, list[float]] = {name: [] for name in projects}
        version = []
        for rep in range(args.reps):
            for name, root in projects.items():
                s, out = timed_run([dvc, "repro"], root)
                if "Running stage" in out:
                    raise RuntimeError(f"{name}: the no-op dvc repro ran a stage (is this checkout up to date?):\n{out[-2000:]}")
                times[name].append(s)
            version.append(timed_run([dvc, "version"], REPO)[0])
            log(f"{NAME}: rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
    result = {
        "stages": len(stages), "params_keys_listed": sum(len(v) for v in stages.values()),
        **{f"noop_{k}_s_median": round(median(v), 3) for k, v in times.items()},
        **{f"noop_{k}_s_all": [round(x, 3) for x in v] for k, v in times.items()},
        "dvc_version_s_median": round(median(version), 3),
        "goal": "no-op dvc repro < 2.0 s (noop_repro); this bench gives DVC's own share",
    }
    return finish(NAME, result)


if __name__ == "__main__":
    main()
