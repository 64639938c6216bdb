from pathlib import Path

import yaml

from pipeline import ingest, report
from tests.conftest import make_media


def test_report_shows_counts_reasons_and_frames(tmp_path):
    make_media(tmp_path / "raw" / "good.mp4", seconds=3.5)
    make_media(tmp_path / "raw" / "mute.mp4", seconds=3.5, audio=False)
    params = {"runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards"},
              "datasets": {"toy": {"adapter": "folder", "raw_dir": "raw"}}, "steps": {"face": {"enabled": False}, "encode": {"preset": "ultrafast"}},
              "report": {"frames_per_dataset": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    ingest.run("toy", root=tmp_path, params_file=tmp_path / "params.yaml")
    (tmp_path / "weights" / "tiny").mkdir(parents=True)
    (tmp_path / "weights" / "tiny" / "manifest.json").write_text('{"models": [{"name": "w2v", "tiny": true}]}')
    report.run(root=tmp_path, params_file=tmp_path / "params.yaml")
    md = (tmp_path / "reports" / "data.md").read_text()
    page = (tmp_path / "reports" / "index.html").read_text()
    assert "| toy | 2 | 1 |" in md and "no_audio: 1" in md and "mute.mp4" in md
    assert "Tiny stand-in weights" in md and "w2v" in page
    assert page.count("data:image/jpeg;base64,") == 1  # the one kept clip, embedded
