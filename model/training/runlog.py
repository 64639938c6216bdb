"""What a run reports: dvclive metrics (``reports/train/<stage>/``), a progress bar, step timings.

Every ``log_every`` steps one dvclive row holds the means over those steps of every loss term
(``loss/total``, ``loss/diffusion``, ``loss/sync`` ...), ``lr`` and ``grad_norm``: the run's results,
a DVC output (``metrics.json`` and the plots), the same on every machine for the same seed.
How fast it went belongs to the run record (:mod:`core.runs`), not to the output, so ``dvc.lock``
does not change with the machine's load: ``samples_per_s``, the seconds per step split into
``time/data`` (waiting for the loader), ``time/forward``, ``time/backward``, ``time/optimizer``
(clip, step, EMA) and ``time/total``, and ``memory/peak_gib`` (CUDA peak allocated, else the
process's peak resident set) go to a second dvclive folder, ``train-<stage>/`` in the ``runs``
folder beside ``log_dir`` (``reports/runs/``; same rows, same steps), and their means, the git
commit and the resumed checkpoint to ``reports/runs/train-<stage>.json``. ``tiny`` is logged as a
param and in ``metrics.json``: results of a run from tiny stand-in weights prove the machinery, not
quality. Only the main process writes.
"""

from __future__ import annotations

import logging
import resource
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from core.runs import beside, write_run

log = logging.getLogger("model.train")

#: step values that describe the execution (speed, memory), not the result
SPEED_KEYS = ("time/", "samples_per_s", "memory/")


def is_speed(key: str) -> bool:
    return key.startswith(SPEED_KEYS)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class Timer:
    """Wall-clock splits of one step (the device is synchronised at each mark)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.times: dict[str, float] = defaultdict(float)
        self.last = time.perf_counter()

    def mark(self, name: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.times[name] += now - self.last
        self.last = now


def truncate(folder: Path, step: int) -> None:
    """Drop the rows after ``step`` from the dvclive tables (a resumed run logs those steps again)."""
    for tsv in (folder / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        if not lines:
            continue
        column = lines[0].split("\t").index("step")
        tsv.write_text("\n".join([lines[0]] + [r for r in lines[1:] if int(r.split("\t")[column]) <= step]) + "\n")


class RunLog:
    """dvclive + tqdm for the main process (a silent no-op elsewhere)."""

    def __init__(self, folder: Path, main: bool, resume: bool, start: int, total: int, log_every: int,
                 params: dict[str, Any], run_info: dict[str, Any] | None = None):
        self.main, self.log_every = main, log_every
        self.sums: dict[str, float] = defaultdict(float)
        self.speed_sums: dict[str, float] = defaultdict(float)  # over the whole run, for the run record
        self.count = self.speed_count = 0
        self.live = self.speed = self.bar = None
        self.stage = str(params.get("stage", folder.name))
        self.runs, self.run_info = beside(folder.parent), dict(run_info or {})
        self.started = time.perf_counter()
        if not main:
            return
        from dvclive import Live
        from tqdm.auto import tqdm

        speed_folder = self.runs / f"train-{self.stage}"
        if resume:
            truncate(folder, start)
            truncate(speed_folder, start)
        try:
            self.live = Live(dir=str(folder), resume=resume, save_dvc_exp=False, dvcyaml=None, report=None)
            self.speed = Live(dir=str(speed_folder), resume=resume, save_dvc_exp=False, dvcyaml=None, report=None)
        except Exception as e:  # dvclive asks git for HEAD: a repository without a commit has none
            if "Empty git repo" not in str(e):
                raise
            raise RuntimeError(f"dvclive cannot log {folder}: the git repository has no commit yet. Fix: "
                               f"`git add -A && git commit -m init`, then re-run") from None
        self.live.log_params(params)
        self.bar = tqdm(total=total, initial=start, desc=f"train {params.get('stage', '')}", unit="step", dynamic_ncols=True)

    def summary(self, key: str, value: Any) -> None:
        """A value of the run's ``metrics.json`` (no plot)."""
        if self.live is not None:
            self.live.summary[key] = value

    def step(self, step: int, values: dict[str, float], last: bool = False) -> None:
        """Accumulate one step; write a row every ``log_every`` steps (and at the last)."""
        for k, v in values.items():
            self.sums["loss/total" if k == "loss" else k] += float(v)  # "loss" would shadow the loss/<term> group
            if is_speed(k):
                self.speed_sums[k] += float(v)
        self.count += 1
        self.speed_count += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{values.get('loss', float('nan')):.4f}", refresh=False)
        if self.live is None or (step % self.log_every and not last):
            return
        for live, speed in ((self.live, False), (self.speed, True)):
            live.step = step
            for k, v in self.sums.items():
                if is_speed(k) == speed:
                    live.log_metric(k, v / self.count)
            live.next_step()
        self.sums.clear()
        self.count = 0

    def metric(self, step: int, values: dict[str, float]) -> None:
        """Values logged at ``step`` outside the step means (validation)."""
        if self.live is None:
            return
        self.live.step = step
        for k, v in values.items():
            self.live.log_metric(k, float(v))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.live is not None:
            self.live.end()
            self.speed.end()
            means = {k: round(v / max(1, self.speed_count), 4) for k, v in sorted(self.speed_sums.items())}
            write_run(self.runs, f"train-{self.stage}", {
                "seconds": round(time.perf_counter() - self.started, 3), "steps_run": self.speed_count,
                **self.run_info, "step_means": means})
