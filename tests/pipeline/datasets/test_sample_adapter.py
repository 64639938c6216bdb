"""The ``sample`` adapter: the videos named in sample.json, with speaker and purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import datasets
from pipeline.datasets import DatasetError
from pipeline.datasets import sample as adapter


def write(root: Path, clips: list[dict], files: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sample.json").write_text(json.dumps({"generator": "pipeline.sample", "version": 1, "params": {}, "clips": clips}))
    if files:
        for c in clips:
            (root / c["file"]).write_bytes(b"")
    return root


CLIPS = [
    {"file": "clean_24fps_44k.mp4", "speaker": "spk_a", "purpose": "clean", "fps": 24.0, "sample_rate": 44100, "duration": 6.0, "yaw_deg": 0.0},
    {"file": "head_turn_60.mp4", "speaker": "spk_b", "purpose": "head_turn", "fps": 25.0, "sample_rate": 48000, "duration": 6.0, "yaw_deg": 60.0},
    {"file": "vfr_jitter.mkv", "speaker": "spk_c", "purpose": "vfr", "fps": 25.0, "sample_rate": 48000, "duration": 5.0, "yaw_deg": 0.0},
]


def test_lists_the_manifest_files_with_their_metadata(tmp_path: Path) -> None:
    raw = write(tmp_path / "sample", CLIPS)
    (raw / "unlisted.mp4").write_bytes(b"")  # only what the manifest names
    sources = adapter.list_sources(raw, adapter.Options())
    assert [s.rel for s in sources] == [c["file"] for c in CLIPS]
    assert all(s.path == (raw / s.rel).resolve() for s in sources)
    assert sources[1].meta["speaker"] == "spk_b"
    assert sources[1].meta["purpose"] == "head_turn"
    assert sources[1].meta["yaw_deg"] == 60.0
    assert "file" not in sources[0].meta


def test_missing_manifest_names_the_file_and_the_fix(tmp_path: Path) -> None:
    raw = tmp_path / "sample"
    raw.mkdir()
    with pytest.raises(DatasetError, match=r"sample\.json.*python -m pipeline\.demo_data"):
        adapter.list_sources(raw, adapter.Options())


def test_missing_video_and_bad_manifest_are_errors(tmp_path: Path) -> None:
    raw = write(tmp_path / "a", CLIPS, files=False)
    with pytest.raises(DatasetError, match="clean_24fps_44k.mp4"):
        adapter.list_sources(raw, adapter.Options())
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "sample.json").write_text("{not json")
    with pytest.raises(DatasetError, match="sample.json"):
        adapter.list_sources(bad, adapter.Options())


def test_dataset_entry_uses_the_adapter(tmp_path: Path) -> None:
    write(tmp_path / "data" / "sample", CLIPS)
    sources = datasets.list_sources("sample", {"adapter": "sample", "raw_dir": "data/sample"}, root=tmp_path)
    assert [s.rel for s in sources] == sorted(c["file"] for c in CLIPS)
    with pytest.raises(Exception, match="unknown key 'views'"):
        datasets.list_sources("sample", {"adapter": "sample", "raw_dir": "data/sample", "views": ["front"]}, root=tmp_path)
