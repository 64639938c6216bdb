"""``vfhq`` adapter on a fake tree in VFHQ's published layout (meta_info/{train,test}/Clip+...txt + videos)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.params import ParamsError
from core.shards import read_manifest, read_rejects
from pipeline import datasets, ingest
from pipeline.datasets.vfhq import parse_meta
from tests.conftest import make_media

VIDEO = "aB-_x9"  # YouTube ids may hold '-' and '_'


def _meta(video: str, pid: int, clip: int, first: int, last: int, fps: str = "25", boxes: bool = True) -> str:
    lines = [f"Video ID: {video}", "H: 96", "W: 96", f"FPS: {fps}", f"PID: {pid}", f"CLIP: C{clip}", "CROP: 10 12 80 86", "",
             "FRAME INDEX X0 Y0 X1 Y1 [Landmarks (5 Points)]"]
    if boxes:
        for f in range(first + 1, last):
            side = 50 + (f % 3)
            lines.append(f"{f:08d} 20 22 {20 + side} {22 + side} 30.5 40.2 60.1 40.0 45.3 55.0 33.2 65.1 57.0 65.2")
    return "\n".join(lines) + "\n"


def make_tree(root: Path) -> Path:
    raw = root / "raw"
    make_media(raw / "downloads" / f"{VIDEO}.mp4", seconds=6.0, size="96x96")
    meta = raw / "meta_info"
    (meta / "train").mkdir(parents=True)
    (meta / "test").mkdir()
    (meta / "train" / f"Clip+{VIDEO}+P1+C0+F24-126.txt").write_text(_meta(VIDEO, 1, 0, 24, 126))
    (meta / "train" / f"Clip+{VIDEO}+P0+C3+F49-150.txt").write_text(_meta(VIDEO, 0, 3, 49, 150, boxes=False))
    (meta / "test" / "Clip+notDownloaded+P0+C0+F0-101.txt").write_text(_meta("notDownloaded", 0, 0, 0, 101))
    (meta / "test" / "Clip+broken.txt").write_text("H: 96\n")  # the name fits no clip: skipped
    (meta / "test" / "Clip+noFps+P0+C0+F0-50.txt").write_text("H: 96\nW: 96\n")  # no FPS: skipped
    return raw


def test_meta_files_become_ranged_sources(tmp_path):
    raw = make_tree(tmp_path)
    sources = datasets.list_sources("vfhq", {"adapter": "vfhq", "raw_dir": str(raw)})
    assert len(sources) == 3
    by = {(s.meta["video_id"], s.meta["clip"]): s for s in sources}
    s = by[(VIDEO, 0)]
    # VFHQ's script takes frames first+1 .. last-1: the range [(first + 1) / fps, last / fps)
    assert s.range == (25 / 25, 126 / 25) and s.rel == f"downloads/{VIDEO}.mp4"
    assert s.meta["speaker"] == f"{VIDEO}_P1" and s.meta["person"] == 1 and s.meta["split"] == "train"
    assert s.meta["crop"] == [10, 12, 80, 86] and s.meta["annotated_size"] == [96, 96] and s.meta["fps"] == 25.0
    boxes = s.meta["face_boxes"]
    assert boxes["count"] == 101 and boxes["median_side"] == 51.0 and boxes["median_box"][:2] == [20.0, 22.0]
    assert "boxes" not in boxes and "face_boxes" not in by[(VIDEO, 3)].meta
    gone = by[("notDownloaded", 0)]
    assert gone.rel == "notDownloaded.mp4" and not gone.path.exists() and gone.meta["split"] == "test"
    only_test = datasets.list_sources("vfhq", {"adapter": "vfhq", "raw_dir": str(raw), "splits": ["test"], "keep_boxes": True})
    assert [x.meta["video_id"] for x in only_test] == ["notDownloaded"]
    assert only_test[0].meta["face_boxes"]["boxes"][0][:5] == [1, 20.0, 22.0, 71.0, 73.0]


def test_bad_meta_files_and_folders(tmp_path):
    raw = make_tree(tmp_path)
    bad = raw / "meta_info" / "train" / f"Clip+{VIDEO}+P0+C9+F10-20.txt"
    bad.write_text(_meta("someOtherId", 0, 9, 10, 20))
    with pytest.raises(ValueError, match="differs from the file name"):
        parse_meta(bad)
    with pytest.raises(ValueError, match="lacks FPS"):
        parse_meta(raw / "meta_info" / "test" / "Clip+noFps+P0+C0+F0-50.txt")
    assert len(datasets.list_sources("vfhq", {"adapter": "vfhq", "raw_dir": str(raw)})) == 3  # the bad one is skipped
    with pytest.raises(datasets.DatasetError, match="meta_info folder not found"):
        datasets.list_sources("vfhq", {"adapter": "vfhq", "raw_dir": str(raw), "meta_dir": "nowhere"})
    with pytest.raises(ParamsError, match="unknown key 'meta'"):
        datasets.list_sources("vfhq", {"adapter": "vfhq", "raw_dir": str(raw), "meta": "x"})


def test_ingest_cuts_each_clip_range_and_rejects_videos_not_downloaded(tmp_path):
    raw = make_tree(tmp_path)
    params = {"runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards"},
              "datasets": {"vfhq": {"adapter": "vfhq", "raw_dir": str(raw)}},
              "steps": {"face": {"enabled": False}, "encode": {"preset": "ultrafast"}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    ingest.run("vfhq", root=tmp_path, params_file=tmp_path / "params.yaml")
    folder = tmp_path / "shards" / "clips" / "vfhq"
    rows = {r["key"]: r for r in read_manifest(folder).to_pylist()}
    key = f"vfhq__downloads-{VIDEO}__0001000-0005040__0001000"
    assert set(rows) == {key, f"vfhq__downloads-{VIDEO}__0002000-0006000__0002000"}
    assert rows[key]["start"] == 1.0 and rows[key]["frames"] == 101 and rows[key]["speaker"] == f"{VIDEO}_P1"
    assert json.loads(rows[key]["source_meta"])["face_boxes"]["count"] == 101
    rejects = read_rejects(folder).to_pylist()
    assert [(r["source"], r["reason"]) for r in rejects] == [("notDownloaded.mp4", "missing_file")]
