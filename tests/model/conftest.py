"""Fixtures of the model tests: one tiny SD 1.5-like folder per session."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd15_dir(tmp_path_factory):
    from core.tiny_sd import write_tiny_sd15

    return write_tiny_sd15(tmp_path_factory.mktemp("sd15-tiny"), seed=0)


@pytest.fixture(scope="session")
def base_unet(sd15_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(sd15_dir / "unet")).eval()
