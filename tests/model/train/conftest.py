"""Fixtures of the trainer tests: one tiny training project per session (:mod:`.project`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .project import COMMON, DATA, MODEL, make_project, write_params  # noqa: F401 (the tests import them from here)


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("train"))
