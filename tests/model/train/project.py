"""A tiny training project: toy shards (``tests.model.data.toy``) whose sidecars match the tiny SD 1.5 folder
and the tiny component sizes below, a tiny weights folder, and a params file (:func:`write_params`). Used by
the trainer tests and ``bench.train_learns``."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import yaml

from tests.model.data import toy

MODEL = {
    "unet": {"audio_dim": 24, "emotion_dim": 32},
    "audio_proj": {"num_layers": 3, "feature_dim": 8, "context_frames": 2, "hidden_dim": 32, "num_tokens": 4, "output_dim": 24},
    "emotion_embed": {"text_dim": 7, "ser_dim": 4, "va_segments": 4, "va_dim": 2, "hidden_dim": 32, "num_tokens": 3,
                      "output_dim": 32},
    "a2m": {"latent_channels": 4, "motion_frames": 2, "audio_layers": 3, "audio_dim": 8, "cond_dim": 16, "hidden_channels": 32,
            "num_downsamples": 2, "z_channels": 4, "norm_num_groups": 8,
            "flow": {"hidden_channels": 16, "num_flows": 2, "layers_per_coupling": 1, "kernel_size": 3}},
    "image_proj": {"enabled": True, "in_dim": 16, "tokens": 1},  # the toy clip_image rows (16)
    "conditioning": {"drop_reference": 0.05, "drop_caption": 0.05, "drop_audio": 0.05, "drop_emotion": 0.05},
}
DATA = {"size": 32, "target_frames": 4, "motion_frames": 2, "audio_context": 2, "stage1_features": ["caption", "clip_image"],
        "stage2_features": ["audio_embed", "emotion_text", "emotion_speech", "valence_arousal", "caption", "clip_image"],
        "shuffle_buffer": 4, "seed": 0}
COMMON = {"batch_size": 2, "num_workers": 0, "log_every": 1, "checkpoint_every": 2, "keep_last": 5, "lr": 1e-4,
          "steps": 100, "seed": 0}


def _audio_embed(key, i):
    rows = np.stack([np.sin(i[:, None] * (k + 1) / 7.0 + np.arange(8)) for k in range(3)], 1)  # (F, 3, 8)
    return [("npy", toy.npy(rows.astype(np.float16)))]


def _caption(key, i):
    g = np.random.default_rng(len(key))
    return [("text_states.npy", toy.npy(g.standard_normal((77, 32)).astype(np.float16))),
            ("sentence.npy", toy.npy(np.zeros(4, np.float32)))]


def make_project(root: Path) -> Path:
    """``<root>/shards`` (train and val splits), ``<root>/weights/tiny/stable-diffusion-v1-5``."""
    from core.tiny_sd import write_tiny_sd15
    from core.weights import MARKER

    with mock.patch.dict(toy.PER_FEATURE, {"audio_embed": _audio_embed, "caption": _caption}):
        toy.make_project(root)
    splits = root / "shards" / "splits"
    lines = (splits / "train.jsonl").read_text().splitlines()
    (splits / "val.jsonl").write_text("\n".join(lines[:2]) + "\n")
    sd = write_tiny_sd15(root / "weights" / "tiny" / "stable-diffusion-v1-5", seed=0)
    (sd / MARKER).write_text(json.dumps({"tiny": True}))
    return root


def write_params(root: Path, out: Path, common: dict | None = None, **stages: dict) -> Path:
    """A params file for the project at ``root`` writing checkpoints and logs under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    train = {"common": {**COMMON, "out_dir": str(out / "checkpoints"), "log_dir": str(out / "reports"), **(common or {})}}
    train.update(stages)
    data = {"weights": {"profile": "tiny", "dir": str(root / "weights")}, "shards": {"root": str(root / "shards")},
            "data": DATA, "model": MODEL, "train": train}
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
