"""Two CPU ranks (gloo) under ``accelerate launch``: the trainer equals one process with the doubled batch,
and the loader's batches pass accelerate's default ``prepare``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.train import train

from .conftest import write_params

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]


def _launch(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_ranks_equal_one_process_with_the_doubled_batch(project, tmp_path):
    # the same first global batch at both steps (overfit_batch), per-sample draws keyed by the global index;
    # AdamW's eps raised so that gradients that are zero in exact arithmetic (a bias before a GroupNorm),
    # whose sign is float noise, do not turn into +-lr updates
    # (2 micro-batches per step: the first step all-reduces each, later ones only the last)
    common = {"overfit_batch": True, "lr": 1e-3, "eps": 1e-3, "grad_accum": 2, "checkpoint_every": 3}
    ddp = write_params(project, tmp_path / "ddp", common={**common, "batch_size": 1})
    done = _launch("-m", "model.train", "stage1", "--max-steps", "3", "--resume", "none", "--params", str(ddp))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one = train("stage1", write_params(project, tmp_path / "one", common={**common, "batch_size": 2}), max_steps=3, resume="none")
    for c in ("unet", "reference_net"):
        a = load_file(str(tmp_path / "ddp" / "checkpoints" / "stage1" / "step-3" / c / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(one.checkpoint / c / "diffusion_pytorch_model.safetensors"))
        worst = max((a[k] - b[k]).abs().max().item() for k in a)
        assert worst < 1e-6, (c, worst)
    rows = (tmp_path / "ddp" / "reports" / "stage1" / "plots" / "metrics" / "loss" / "total.tsv").read_text().splitlines()[1:]
    assert [float(r.split("\t")[1]) for r in rows] == pytest.approx(one.losses, rel=1e-5)
    assert torch.load(tmp_path / "ddp" / "checkpoints" / "stage1" / "step-3" / "train_state.pt", weights_only=False)["world_size"] == 2
    assert (tmp_path / "ddp" / "checkpoints" / "stage1" / "step-3" / "rank-1.pt").is_file()


def test_batches_pass_accelerates_default_prepare_once_collated(project):
    child = str(Path(__file__).with_name("_prepare_child.py"))
    ok = _launch(child, str(project / "shards"), "32", "collate")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert "rank 0: [(2, 3, 32, 32)" in ok.stdout and "rank 1: [(2, 3, 32, 32)" in ok.stdout
    assert "'key'" not in ok.stdout
    raw = _launch(child, str(project / "shards"), "32", "default")
    assert raw.returncode != 0  # lists of strings cannot be broadcast
