"""Every stage process runs with the Makefile's environment unless the shell sets otherwise (core.cli)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A stage run from an activated shell: torch imported before the stage's CLI runs (as model.train does).
SCRIPT = r"""
import os, subprocess, sys, argparse
import torch
from threadpoolctl import threadpool_info
from core import cli
ap = cli.parser("x", None)
def body(args):
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('OMP_NUM_THREADS'), os.environ.get('HF_HUB_OFFLINE'))"],
                           capture_output=True, text=True).stdout.split()
    blas = sorted({p["num_threads"] for p in threadpool_info()})
    print("threads", torch.get_num_threads(), "blas", *blas, "env", os.environ.get("OMP_NUM_THREADS"), os.environ.get("HF_HUB_OFFLINE"),
          os.environ.get("TRANSFORMERS_OFFLINE"), "child", *child)
sys.exit(cli.run(ap, [], body))
"""


def run(extra: dict[str, str]) -> str:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO), **extra}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_an_unset_shell_gets_one_thread_and_offline_in_the_stage_and_its_children():
    assert run({}) == "threads 1 blas 1 env 1 1 1 child 1 1"


def test_what_the_shell_sets_wins():
    assert run({"OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "0"}) == "threads 2 blas 2 env 2 0 1 child 2 0"
