"""The toy shard tree, built once per session (see ``toy.py``)."""

from __future__ import annotations

import pytest

from .toy import make_project


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("data"))
