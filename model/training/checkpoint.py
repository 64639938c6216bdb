"""Checkpoints: ``<out_dir>/<stage>/step-N/``, written atomically, the last ``keep_last`` kept.

Layout of one checkpoint::

    step-N/
      <component>/           save_pretrained of every trained network (unet, reference_net, audio_proj,
                             emotion_embed, a2m): config.json + diffusion_pytorch_model.safetensors
      ema/<component>/       the EMA weights (with train.<stage>.ema): what later stages and inference load
      scheduler/             the run's noise-schedule config (prediction type, zero-SNR, spacing)
      train_state.pt         step, optimiser, lr scheduler, grad scaler, EMA shadows, world size
      rank-R.pt              per rank: every RNG state and the loader position (LoaderState + worker turn)
      run.json               the run's resolved config and environment

A checkpoint is written in ``.step-N.tmp`` and renamed, so a run killed while saving (kill -9)
leaves the previous checkpoint as the newest complete one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STEP = re.compile(r"^step-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that does not fit this run (another world size, stage or model configuration)."""


def step_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root`` (a stage's folder), oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP.match(p.name)) and (p / "train_state.pt").is_file()]
    return [p for _, p in sorted(found)]


def newest(root: Path | str) -> Path | None:
    dirs = step_dirs(Path(root))
    return dirs[-1] if dirs else None


def resume_dir(resume: str, root: Path) -> Path | None:
    """``--resume``: ``auto`` (newest under ``root``, or none), ``none``, or a step folder."""
    if resume == "none":
        return None
    if resume == "auto":
        return newest(root)
    path = Path(resume)
    if not (path / "train_state.pt").is_file():
        raise FileNotFoundError(f"--resume {resume}: not a checkpoint folder (no train_state.pt)")
    return path


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def tmp_dir(root: Path, step: int) -> Path:
    return root / f".step-{step}.tmp"


def save_rank(root: Path, step: int, rank: int, state: dict[str, Any]) -> None:
    """This rank's RNG and loader state, into the checkpoint being written (called by every rank)."""
    torch.save(state, tmp_dir(root, step) / f"rank-{rank}.pt")


def begin(root: Path, step: int) -> None:
    """Main process: a fresh temporary folder for checkpoint ``step``."""
    tmp = tmp_dir(root, step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)


def finish(root: Path, step: int, components: dict[str, Any], ema: Any, state: dict[str, Any], extra: dict[str, Any],
           keep_last: int) -> Path:
    """Main process: the networks (and EMA weights), the train state and ``extra`` files (name -> object
    with ``save_pretrained`` or JSON-able value) into the temporary folder, renamed to ``step-N``;
    then only the newest ``keep_last`` checkpoints are kept."""
    tmp = tmp_dir(root, step)
    for name, module in components.items():
        module.save_pretrained(str(tmp / name), safe_serialization=True)
    if ema is not None:
        with ema.swapped():
            for name, module in components.items():
                module.save_pretrained(str(tmp / "ema" / name), safe_serialization=True)
    for name, value in extra.items():
        if hasattr(value, "save_pretrained"):
            value.save_pretrained(str(tmp / name))
        else:
            (tmp / name).write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    torch.save(state, tmp / "train_state.pt")
    final = root / f"step-{step}"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in step_dirs(root)[:-keep_last]:
        shutil.rmtree(old)
    return final


def load_rank(checkpoint: Path, rank: int) -> dict[str, Any]:
    path = checkpoint / f"rank-{rank}.pt"
    if not path.is_file():
        raise CheckpointError(f"{checkpoint} has no {path.name}: resume with the number of ranks it was saved with")
    return torch.load(path, weights_only=False)


def load_weights(module: torch.nn.Module, folder: Path) -> None:
    """Load a ``save_pretrained`` folder's weights into ``module`` (strict: every key, every shape); a
    :class:`CheckpointError` naming the differing config keys when the folder was saved with other ``model`` params."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no safetensors weights")
    saved = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    ours = {k: v for k, v in dict(getattr(module, "config", {})).items() if not k.startswith("_")}
    same = lambda a, b: json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)  # noqa: E731
    differ = sorted(k for k in ours if k in saved and not same(saved[k], ours[k]))
    if differ:
        raise CheckpointError(f"{folder} was saved with other settings of {', '.join(differ[:5])} (saved "
                              f"{ {k: saved[k] for k in differ[:3]} }); match the model section to it or retrain that stage")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{folder} does not fit the model: {str(e).splitlines()[0]}") from None


def weights_folder(checkpoint: Path, component: str) -> Path:
    """The weights a later stage takes from a checkpoint: the EMA weights when the run kept them."""
    ema = checkpoint / "ema" / component
    return ema if ema.is_dir() else checkpoint / component
