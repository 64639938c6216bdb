import pytest

from pipeline.cache import Cache


@pytest.fixture
def env(tmp_path):
    """A fresh cache and a log folder for the toy steps' call markers."""
    (tmp_path / "log").mkdir()
    return Cache(tmp_path / "cache"), str(tmp_path / "log")
