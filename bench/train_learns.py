"""It learns: a tiny model overfits one batch in a few hundred CPU steps (issue 19, item 8).

    python -m bench.train_learns [--steps1 300] [--steps2 600] [--steps-a2m 300] [--lr 1e-3] [--stages stage1,stage2,a2m]

Inputs: the trainer tests' tiny project (``tests.model.train.project``: toy 32x32 clips, sidecars at the
tiny sizes, the tiny SD 1.5 folder), ``train.common.overfit_batch: true`` (the first batch of 2 at every
step; timesteps, noise and CFG drops still drawn anew each step), AdamW at ``--lr``. Stage 2 starts from
a 2-step stage-1 checkpoint (so its loss starts near the untrained level and only the audio, temporal and
emotion modules learn). Reported per stage: mean loss of the first 10 steps, of the last 20, their ratio
(goal: <= 0.5; for the A2M the reconstruction term), and seconds per step. Written to
``bench/results/train_learns.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import RESULTS, temp_folder


def _run(stage: str, params: Path, steps: int, term: str) -> dict:
    from model.train import train

    t0 = time.perf_counter()
    result = train(stage, params, max_steps=steps, resume="none")
    seconds = (time.perf_counter() - t0) / steps
    values = [h[term] for h in result.history]
    first, last = sum(values[:10]) / 10, sum(values[-20:]) / 20
    return {"stage": stage, "term": term, "steps": steps, "first10": first, "last20": last, "ratio": last / first,
            "s_per_step": round(seconds, 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps1", type=int, default=300)
    ap.add_argument("--steps2", type=int, default=600)
    ap.add_argument("--steps-a2m", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--stages", default="stage1,stage2,a2m")
    args = ap.parse_args(argv)
    import torch

    from tests.model.train.project import make_project, write_params

    torch.set_num_threads(1)
    out = {}
    with temp_folder("train_learns") as tmp:
        root = make_project(tmp / "project")
        common = {"overfit_batch": True, "lr": args.lr, "checkpoint_every": 100000, "log_every": 50}
        init = write_params(root, tmp / "init", common=common)
        from model.train import train

        train("stage1", init, max_steps=2, resume="none")
        params = write_params(root, tmp / "run", common=common, stage2={"init_from": str(tmp / "init" / "checkpoints" / "stage1")})
        plan = {"stage1": (args.steps1, "loss/diffusion"), "stage2": (args.steps2, "loss/diffusion"),
                "a2m": (args.steps_a2m, "loss/reconstruction")}
        for stage in args.stages.split(","):
            out[stage] = _run(stage, params, *plan[stage])
    out["ok"] = all(r["ratio"] <= 0.5 for r in out.values() if isinstance(r, dict))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_learns.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
