"""The HDTF adapter: file names, categories, annotation time ranges."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline import datasets
from pipeline.datasets import DatasetError, hdtf
from core.params import ParamsError


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def by_rel(sources) -> dict:
    return {s.rel: s.meta for s in sources}


def test_clip_names_flat_and_nested(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "WDA_KatieHill_000.mp4",
        "RD_Radio11_001.mp4",
        "clips/WRA/WRA_AdamKinzinger0_002.mp4",
        "README.txt",
    )
    sources = hdtf.list_sources(tmp_path, hdtf.Options())
    assert [s.rel for s in sources] == ["RD_Radio11_001.mp4", "WDA_KatieHill_000.mp4", "clips/WRA/WRA_AdamKinzinger0_002.mp4"]
    meta = by_rel(sources)
    assert meta["WDA_KatieHill_000.mp4"] == {
        "speaker": "WDA_KatieHill",
        "category": "WDA",
        "person": "KatieHill",
        "video": "KatieHill",
        "layout": "clip",
        "clip": 0,
    }
    # RD video numbers are kept: each radio video is its own identity
    assert meta["RD_Radio11_001.mp4"]["speaker"] == "RD_Radio11"
    assert meta["RD_Radio11_001.mp4"]["clip"] == 1
    # WDA/WRA: the trailing digit numbers one person's videos
    wra = meta["clips/WRA/WRA_AdamKinzinger0_002.mp4"]
    assert (wra["video"], wra["person"], wra["speaker"], wra["clip"]) == ("AdamKinzinger0", "AdamKinzinger", "WRA_AdamKinzinger", 2)


def test_same_person_across_videos_is_one_speaker(tmp_path: Path) -> None:
    touch(tmp_path, "WDA_AmyKlobuchar0_000.mp4", "WDA_AmyKlobuchar1_000.mp4", "WDA_AmyKlobuchar1_001.mp4")
    assert {s.meta["speaker"] for s in hdtf.list_sources(tmp_path, hdtf.Options())} == {"WDA_AmyKlobuchar"}


def test_readme_style_names_in_category_folders(tmp_path: Path) -> None:
    touch(tmp_path, "WDA/KatieHill_0.mp4", "rd/Radio3.mp4")
    meta = by_rel(hdtf.list_sources(tmp_path, hdtf.Options()))
    assert meta["WDA/KatieHill_0.mp4"]["speaker"] == "WDA_KatieHill"
    assert meta["WDA/KatieHill_0.mp4"]["clip"] == 0
    assert meta["rd/Radio3.mp4"] == {"speaker": "RD_Radio3", "category": "RD", "person": "Radio3", "video": "Radio3", "layout": "full"}


def test_full_video_left_out_when_its_clips_are_present(tmp_path: Path) -> None:
    touch(tmp_path, "_videos_raw/WDA_KatieHill.mp4", "WDA_KatieHill_000.mp4", "_videos_raw/WRA_TimScott.mp4")
    meta = by_rel(hdtf.list_sources(tmp_path, hdtf.Options()))
    assert sorted(meta) == ["WDA_KatieHill_000.mp4", "_videos_raw/WRA_TimScott.mp4"]
    assert meta["_videos_raw/WRA_TimScott.mp4"]["layout"] == "full"
    assert "clip" not in meta["_videos_raw/WRA_TimScott.mp4"]


def test_unrecognised_names_are_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    touch(tmp_path, "WDA_KatieHill_000.mp4", "holiday.mp4", "XYZ_Someone_000.mp4", "WDA_Katie_Hill_x.mp4")
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.hdtf"):
        sources = hdtf.list_sources(tmp_path, hdtf.Options())
    assert [s.rel for s in sources] == ["WDA_KatieHill_000.mp4"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ("holiday.mp4", "XYZ_Someone_000.mp4", "WDA_Katie_Hill_x.mp4"):
        assert name in warned


def test_categories_option(tmp_path: Path) -> None:
    touch(tmp_path, "WDA_KatieHill_000.mp4", "RD_Radio1_000.mp4", "WRA_TimScott_000.mp4")
    sources = hdtf.list_sources(tmp_path, hdtf.Options(categories=("WDA", "WRA")))
    assert [s.meta["category"] for s in sources] == ["WDA", "WRA"]
    with pytest.raises(DatasetError, match=r"categories: got 'XX'; allowed: RD, WDA, WRA"):
        hdtf.Options(categories=("XX",))
    with pytest.raises(DatasetError, match="categories"):
        hdtf.Options(categories=())


def write_annotations(root: Path) -> None:
    (root / "HDTF_dataset").mkdir(parents=True, exist_ok=True)
    (root / "HDTF_dataset/WDA_annotion_time.txt").write_text(
        "KatieHill.mp4 00:05-03:20\n"
        "AmyKlobuchar1.mp4 00:35-02:45 03:25-04:00 bad 05:10-05:00\n"
        "\n"
        "DianeBlack0.mp4 04:20-04:38 05:28-05:40 \n"
    )
    (root / "HDTF_dataset/RD_annotion_time.txt").write_text("Radio1.mp4 00:20-01:35\nKatieHill.mp4 1:00:00-1:00:10\n")


def test_annotation_segments_on_full_videos(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_annotations(tmp_path)
    touch(
        tmp_path,
        "_videos_raw/WDA_KatieHill.mp4",
        "_videos_raw/WDA_AmyKlobuchar1.mp4",
        "_videos_raw/WDA_DianeBlack0.mp4",
        "_videos_raw/WDA_Unlisted.mp4",
        "_videos_raw/RD_Radio1.mp4",
        "WRA_TimScott_000.mp4",
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.hdtf"):
        meta = by_rel(hdtf.list_sources(tmp_path, hdtf.Options(use_annotations=True)))
    assert meta["_videos_raw/WDA_KatieHill.mp4"]["segments"] == [[5.0, 200.0]]
    assert meta["_videos_raw/WDA_AmyKlobuchar1.mp4"]["segments"] == [[35.0, 165.0], [205.0, 240.0]]
    assert meta["_videos_raw/WDA_DianeBlack0.mp4"]["segments"] == [[260.0, 278.0], [328.0, 340.0]]
    assert meta["_videos_raw/RD_Radio1.mp4"]["segments"] == [[20.0, 95.0]]
    assert "segments" not in meta["_videos_raw/WDA_Unlisted.mp4"]
    assert "segments" not in meta["WRA_TimScott_000.mp4"]  # clips are already cut
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'bad'" in warned and "'05:10-05:00'" in warned and "WDA_Unlisted.mp4" in warned


def test_annotations_only_when_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_annotations(tmp_path)
    touch(tmp_path, "WDA_KatieHill.mp4")
    assert "segments" not in hdtf.list_sources(tmp_path, hdtf.Options())[0].meta
    (tmp_path / "HDTF_dataset/WDA_annotion_time.txt").unlink()
    (tmp_path / "HDTF_dataset/RD_annotion_time.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.hdtf"):
        sources = hdtf.list_sources(tmp_path, hdtf.Options(use_annotations=True))
    assert "segments" not in sources[0].meta
    assert "annotion_time.txt" in caplog.text


def test_end_to_end_through_params(tmp_path: Path) -> None:
    raw = tmp_path / "data/hdtf"
    write_annotations(raw)
    touch(raw, "WDA_KatieHill.mp4", "RD_Radio1_000.mp4", "RD_Radio1_001.mp4")
    entry = {"adapter": "hdtf", "raw_dir": "data/hdtf", "test_only": False, "categories": ["WDA", "RD"], "use_annotations": True}
    sources = datasets.list_sources("hdtf", entry, root=tmp_path)
    assert [s.rel for s in sources] == ["RD_Radio1_000.mp4", "RD_Radio1_001.mp4", "WDA_KatieHill.mp4"]
    assert sources[2].meta["segments"] == [[5.0, 200.0]]
    assert datasets.list_sources("hdtf", entry, root=tmp_path) == sources
    with pytest.raises(ParamsError, match="use_annotation"):
        datasets.list_sources("hdtf", {"adapter": "hdtf", "raw_dir": "data/hdtf", "use_annotation": True}, root=tmp_path)
    with pytest.raises(ParamsError, match=r"datasets.hdtf: hdtf option categories"):
        datasets.list_sources("hdtf", {"adapter": "hdtf", "raw_dir": "data/hdtf", "categories": ["wda"]}, root=tmp_path)
