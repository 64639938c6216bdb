"""The evaluate stage on the tiny trained model: its files, metrics equal to the standalone metrics CLI on
the same videos, the cached FID/FVD ground truth equal to computing it, and the same numbers on 2 ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from model.evaluate import main, run
from model.evaluation.reference import compute, load_reference
from model.metrics import cli as metrics_cli
from tests.model.inference.conftest import TEST_CLIPS


@pytest.fixture(scope="module")
def evaluated(trained):
    params = trained / "params.yaml"
    meta = compute(params)
    report = run(params)
    return trained, params, meta, report


def test_outputs(evaluated):
    root, _, meta, report = evaluated
    out = root / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"psnr", "ssim", "fid", "fvd", "clips", "frames", "tiny"}
    assert metrics["clips"] == TEST_CLIPS and metrics["frames"] == 16 * TEST_CLIPS and metrics["tiny"] == 1
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    rows = pq.read_table(out / "per_clip.parquet").to_pylist()
    assert len(rows) == TEST_CLIPS and all(r["frames"] == 16 and r["windows"] == 4 and r["psnr"] > 0 for r in rows)
    plot = (out / "plots" / "per_clip.csv").read_text().splitlines()  # the DVC plot of each clip's metrics
    assert plot[0] == "clip,psnr,ssim,lpips,sync_conf,sync_dist,sync_offset" and plot[1].endswith(",,,,") and sorted(line.split(",")[0] for line in plot[1:]) == sorted(r["clip"] for r in rows)
    from model.evaluation.report import summary_lines

    said = summary_lines(report, out, "test")  # what the stage prints: a few lines, every metric
    assert len(said) <= 6 and max(map(len, said[:-1])) <= 120 and "psnr " in " ".join(said) and "table.md" in said[-1]
    assert not any("generate_s" in r for r in rows)  # timings: the run record's (same output bytes on every machine)
    run = json.loads((root / "runs" / "evaluate.json").read_text())
    assert sorted(run["generate_s_per_clip"]) == sorted(r["clip"] for r in rows) and run["seconds_per_generated_second"] > 0
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["fid_fvd_ground_truth"] == "cached reference statistics" and protocol["tiny"] is True
    assert protocol["generation"]["sampler"].startswith("DDIM, 2 steps") and protocol["measurement"]["ssim"]
    table = (out / "table.md").read_text()
    assert "Tiny stand-in weights" in table and "| SynchroRaMa (paper) | 32.97 |" in table and "this run: toy, tiny" in table
    assert sorted(p.name for p in (out / "videos").iterdir() if "side_by_side" in p.name) == [f"{rows[0]['clip']}.side_by_side.mp4"]
    assert "data:video/mp4;base64," in (out / "index.html").read_text()
    assert meta["counts"] == {"toy": {"fid": 16 * TEST_CLIPS, "fvd": TEST_CLIPS}}
    assert not (out / ".work").exists()


def test_page_shows_the_table_and_every_logged_training_curve(evaluated):
    """index.html: Table 1 as an HTML table, and per training stage (tiny, 2 steps) one chart per dvclive table
    with a dot per logged row."""
    import re

    root = evaluated[0]
    page = (root / "eval" / "index.html").read_text()
    assert "<th>PSNR ↑</th>" in page and "<td>SynchroRaMa (paper)</td><td>32.97</td>" in page
    for stage in ("a2m", "stage1", "stage2"):
        folder = root / "reports" / stage / "plots" / "metrics"
        tables = {t.relative_to(folder).with_suffix("").as_posix(): t for t in folder.rglob("*.tsv")}
        assert {"loss/total", "lr", "grad_norm"} <= set(tables)
        assert f"<h3>{stage} <small class=tiny-mark>(2 steps, tiny stand-in weights)</small></h3>" in page
        assert page.count(f"aria-label='{stage} ") == len(tables)
        for metric, tsv in tables.items():
            svg = re.search(f"<svg[^>]*aria-label='{stage} {metric}'>.*?</svg>", page).group(0)
            assert svg.count("<circle") == len(tsv.read_text().splitlines()) - 1 == 2 and "<polyline" in svg


def test_metrics_equal_the_standalone_cli_on_the_same_videos(evaluated, tmp_path):
    """The stage measures as `python -m model.metrics` measures any method: regenerate the ground-truth
    files, run the CLI's evaluate on the kept videos, compare every number (FID/FVD: cached vs computed)."""
    from model.data.clips import iter_clips
    from model.evaluation.targets import write_target
    from model.inference.checkpoints import from_checkpoints

    root, _, _, report = evaluated
    data = from_checkpoints(root / "checkpoints").data
    for clip in iter_clips(data, "test", root / "shards"):
        write_target(clip, tmp_path, 16)
    videos = tmp_path / "pred"
    videos.mkdir()
    for p in (root / "eval" / "videos").glob("*.mp4"):
        if "side_by_side" not in p.name:
            os.symlink(p, videos / p.name)
    direct = metrics_cli.evaluate(videos, tmp_path, ["psnr", "ssim", "fid", "fvd"], root / "weights" / "tiny", size=32,
                                  landmarks=tmp_path)
    for key, value in direct["metrics"].items():
        assert report["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-6), key


def test_stale_reference_is_not_used(evaluated):
    root, _, _, _ = evaluated
    keys = ["toy__c0__0000000"]
    assert load_reference(root / "eval_reference", "test", keys, 32, 16, 16, root / "weights" / "tiny") is None


def test_command_line_without_checkpoints_is_a_clear_error(trained, tmp_path, capsys):
    import yaml

    raw = yaml.safe_load((trained / "params.yaml").read_text())
    raw["inference"]["checkpoints"] = str(tmp_path / "none")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    assert main(["--params", str(params), "-q"]) == 2


def test_two_ranks_give_the_same_numbers(evaluated, tmp_path):
    """accelerate launch --num_processes 2 on CPU (gloo): clips split across ranks, metrics gathered."""
    import yaml

    root, params, _, report = evaluated
    raw = yaml.safe_load(params.read_text())
    raw["evaluate"]["out_dir"] = str(tmp_path / "eval2")
    two = tmp_path / "params.yaml"
    two.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu", "-m", "model.evaluate", "--params", str(two), "-q"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    for key, value in report["metrics"].items():
        assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    protocol = json.loads((tmp_path / "eval2" / "protocol.json").read_text())
    assert protocol["ranks"] == 2
