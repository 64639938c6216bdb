"""One tiny trained model per session: the trainer's tiny project (``tests.model.train.project``), stage 1,
the A2M and stage 2 trained for 2 steps each, a test split, and the FID/FVD judges' tiny stand-ins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.model.train.project import make_project, write_params

TEST_CLIPS = 3


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """``<root>/params.yaml`` (with ``inference`` and ``evaluate`` sections), ``<root>/checkpoints/{stage1,a2m,stage2}``."""
    from core import weights
    from judges import i3d, inception
    from model.train import train

    root = make_project(tmp_path_factory.mktemp("inference"))
    splits = root / "shards" / "splits"
    long = [line for line in (splits / "train.jsonl").read_text().splitlines() if json.loads(line)["frames"] >= 20]
    (splits / "test.jsonl").write_text("\n".join(long[:TEST_CLIPS]) + "\n")  # each at least one 16-frame FVD clip
    for mod in (inception, i3d):
        folder = root / "weights" / "tiny" / mod.SPEC.name
        folder.mkdir(parents=True)
        mod.SPEC.make_tiny(folder, 0)
        (folder / weights.MARKER).write_text('{"tiny": true}')
    params = write_params(root, root, stage2={"init_from": str(root / "checkpoints" / "stage1"), "motion_source": "gt",
                                              "val_every": 0})
    for stage in ("stage1", "a2m", "stage2"):
        train(stage, params, max_steps=2, resume="none")
    raw = yaml.safe_load(params.read_text())
    raw["inference"] = {"steps": 2, "checkpoints": str(root / "checkpoints")}
    raw["evaluate"] = {"metrics": "psnr,ssim,fid,fvd", "max_frames": 16, "show": 1, "out_dir": str(root / "eval"),
                       "reference_dir": str(root / "eval_reference"), "train_dir": str(root / "reports"), "device": "cpu"}
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    return root
