"""The folder adapter and the common ``datasets.<name>`` entry handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import datasets
from pipeline.datasets import DatasetError, DatasetParams, folder
from core.params import ParamsError


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    touch(
        root,
        "b.mp4",
        "alice/talk2.MOV",
        "alice/sub/talk1.mp4",
        "bob/x.mkv",
        "bob/notes.txt",
        ".hidden/y.mp4",
        "bob/.z.mp4",
    )
    return root


def test_lists_every_video_sorted_skipping_hidden_and_non_videos(raw: Path) -> None:
    sources = folder.list_sources(raw, folder.Options())
    assert [s.rel for s in sources] == ["alice/sub/talk1.mp4", "alice/talk2.MOV", "b.mp4", "bob/x.mkv"]
    assert all(s.path.is_absolute() and s.path == raw / s.rel for s in sources)
    assert all(s.meta == {} for s in sources)
    assert folder.list_sources(raw, folder.Options()) == sources  # deterministic


def test_speaker_from_first_folder(raw: Path) -> None:
    sources = folder.list_sources(raw, folder.Options(speaker_from_dir=True))
    assert {s.rel: s.meta.get("speaker") for s in sources} == {
        "alice/sub/talk1.mp4": "alice",
        "alice/talk2.MOV": "alice",
        "b.mp4": None,
        "bob/x.mkv": "bob",
    }


def test_suffixes_option_is_case_insensitive(raw: Path) -> None:
    sources = folder.list_sources(raw, folder.Options(suffixes=(".MOV",)))
    assert [s.rel for s in sources] == ["alice/talk2.MOV"]


def test_end_to_end_with_common_keys(raw: Path) -> None:
    entry = {"adapter": "folder", "raw_dir": "raw", "test_only": True, "speaker_from_dir": True}
    common, options = datasets.parse("wild", entry)
    assert common == DatasetParams(adapter="folder", raw_dir="raw", test_only=True)
    assert options == folder.Options(speaker_from_dir=True)
    sources = datasets.list_sources("wild", entry, root=raw.parent)
    assert [s.rel for s in sources] == ["alice/sub/talk1.mp4", "alice/talk2.MOV", "b.mp4", "bob/x.mkv"]
    assert sources[0].meta == {"speaker": "alice"}
    assert sources[0].path == (raw / "alice/sub/talk1.mp4").resolve()


def test_absolute_raw_dir_ignores_root(raw: Path, tmp_path: Path) -> None:
    sources = datasets.list_sources("wild", {"adapter": "folder", "raw_dir": str(raw)}, root=tmp_path / "elsewhere")
    assert len(sources) == 4


def test_unknown_key_is_an_error_naming_it(raw: Path) -> None:
    with pytest.raises(ParamsError, match="speaker_from_dirs") as e:
        datasets.list_sources("wild", {"adapter": "folder", "raw_dir": "raw", "speaker_from_dirs": True}, root=raw.parent)
    assert "datasets.wild" in str(e.value)


def test_missing_and_mistyped_common_keys(raw: Path) -> None:
    with pytest.raises(ParamsError, match="adapter"):
        datasets.list_sources("wild", {"raw_dir": "raw"}, root=raw.parent)
    with pytest.raises(ParamsError, match="test_only"):
        datasets.list_sources("wild", {"adapter": "folder", "raw_dir": "raw", "test_only": "yes"}, root=raw.parent)


def test_unknown_adapter_and_missing_folder(raw: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset adapter 'nosuch'"):
        datasets.list_sources("wild", {"adapter": "nosuch", "raw_dir": "raw"}, root=raw.parent)
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.list_sources("wild", {"adapter": "folder", "raw_dir": "missing"}, root=raw.parent)
