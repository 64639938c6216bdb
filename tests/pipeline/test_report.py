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
    # the kept clip's frame, and the rejected (video-only) source's frame with its reason in a red strip
    assert page.count("data:image/jpeg;base64,") == 2 and "<figure class='rejected'>" in page and "no_audio: " in page
    # the ingest plots as inline SVG (nothing fetched), and the weights' provenance
    assert "<svg" in page and "toy: clips by duration" in page and "toy: ingest drops by reason" in page and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")
    assert "<h2>Weights</h2>" in page and "tiny stand-in" in page
    # a link to the evaluation report, which the evaluate stage writes later (the page does not wait for it)
    assert "<a href='eval/index.html'>" in page and "(eval/index.html)" in md and not (tmp_path / "reports" / "eval").exists()


def test_bars_and_splits_sections(tmp_path):
    import json

    from pipeline import report_sections

    svg = report_sections.bars_svg("hours per split", [("train", 2.0), ("val", 0.5)], " h")
    assert svg.count("<rect") == 2 and "width='280.0'" in svg and "width='70.0'" in svg and "2 h" in svg  # val bar: a quarter of train's
    # negative values: bars either side of a zero line (in the middle for -15 and 15)
    svg = report_sections.bars_svg("offset", [("a", -15.0), ("b", 15.0)])
    assert "<rect x='170.0' y='27' width='140.0'" in svg and "<rect x='310.0' y='45' width='140.0'" in svg
    assert "<line x1='310.0' x2='310.0'" in svg
    (tmp_path / "select.json").write_text(json.dumps({"splits": {"train": {"clips": 3, "hours": 0.01, "speakers": 2}},
                                                      "dropped_by_reason": {"music": 1}}))
    table = report_sections.splits_html(tmp_path / "select.json")
    assert "<td>train</td><td>3</td><td>0.010</td><td>2</td>" in table and "music: 1" in table
    assert report_sections.splits_html(tmp_path / "missing.json") == ""
