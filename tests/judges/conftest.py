"""Tiny stand-ins of the judges' folders, generated once per session (nothing downloads)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core import weights
from core.weights import WeightsParams


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """``tiny_folder(spec)``: the verified tiny folder of ``spec`` (generated on first use)."""
    params = WeightsParams(profile="tiny", dir=str(tmp_path_factory.mktemp("judges_weights")))

    def get(spec) -> Path:
        return weights.ensure(spec, params)

    return get


@pytest.fixture
def without(tmp_path):
    """``without(folder, *files)``: a copy of ``folder`` lacking ``files`` (relative paths)."""

    def copy(folder: Path, *missing: str) -> Path:
        dest = tmp_path / f"incomplete-{folder.name}"
        shutil.copytree(folder, dest)
        for name in missing:
            (dest / name).unlink()
        return dest

    return copy
