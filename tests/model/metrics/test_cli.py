"""``python -m model.metrics`` end to end on two tiny mp4s (lavfi test patterns, 64 px) with tiny judges:
pixel and feature metrics as numbers, face metrics 'unavailable' without landmarks and numbers with
a synthetic landmark file; a missing judge folder is 'unavailable', never a number."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from model.metrics import cli, video
from tests.model.metrics.conftest import make_video, synthetic_landmarks

FACE = ("efid", "au_f1", "sync", "ccc")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_video(root / "pred" / "clip_a.mp4", seconds=1.4, source="testsrc")
    make_video(root / "gt" / "clip_a.mp4", seconds=1.6, source="testsrc2")  # longer: truncated to the shorter
    make_video(root / "gt" / "only_gt.mp4", seconds=0.5, source="testsrc2")  # no counterpart: skipped
    lm = root / "landmarks"
    lm.mkdir()
    np.save(lm / "clip_a.landmarks.npy", synthetic_landmarks(40, 64).astype(np.float16))
    return root


def test_pairing_and_alignment(videos):
    pairs, pred_only, target_only = video.pair_videos(videos / "pred", videos / "gt")
    assert [p[0] for p in pairs] == ["clip_a"] and pred_only == [] and target_only == ["only_gt"]
    a = video.decode(videos / "pred" / "clip_a.mp4", 32)
    assert a.shape == (35, 32, 32, 3) and a.dtype == np.uint8  # 1.4 s at 25 fps, resized to 32
    lm = video.align_landmarks(synthetic_landmarks(40, 64), 35, 25.0, 64, 64, 32)
    assert lm.shape == (35, 478, 2)
    np.testing.assert_allclose(lm[3], (synthetic_landmarks(40, 64)[3, :, :2] + 0.5) / 2 - 0.5, rtol=1e-6)
    idx_30 = video.align_landmarks(np.arange(30, dtype=float)[:, None, None].repeat(2, 2), 25, 30.0, 64, 64, 64)
    assert idx_30[:, 0, 0].tolist()[:7] == [0, 1, 2, 4, 5, 6, 7]  # 30 fps track: nearest frame of i * 30 / 25


def test_cli_without_landmarks(videos, weights_dir, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = cli.main(["--pred", str(videos / "pred"), "--target", str(videos / "gt"), "--weights", str(weights_dir),
                   "--size", "64", "--json", str(out), "-q"])
    assert rc == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    for key in ("psnr", "ssim", "lpips", "fid", "fvd"):
        assert isinstance(report["metrics"][key], float), key
    for m in FACE:
        assert m in report["unavailable"] and "landmarks" in report["unavailable"][m]
        assert f"{m}  " in table or f"{m} " in table
    for line in table.splitlines():
        if line.startswith(FACE):
            assert "unavailable: needs face landmarks" in line
    assert not {"efid", "au_f1", "sync_conf", "ccc_v"} & set(report["metrics"])
    assert report["counts"]["videos"] == 1 and report["counts"]["frames"] == 35  # truncated to the shorter video
    assert report["per_video"]["clip_a"]["target_frames"] == 40
    assert report["unpaired"]["target_only"] == ["only_gt"]
    assert set(report["tiny"]) == {"lpips", "fid", "fvd"}
    assert "tiny weights" in table
    assert report["protocol"]["ssim"]["window_size"] == 11 and report["protocol"]["psnr"]["cap_db"] == 100.0
    assert report["counts"]["fvd_clips"] == 2  # windows at 0 and 16 of 35 frames


def test_cli_with_landmarks_and_a_missing_judge(videos, weights_dir, tmp_path, capsys):
    from judges import inception

    weights = tmp_path / "weights"
    shutil.copytree(weights_dir, weights)
    shutil.rmtree(weights / inception.SPEC.name)  # FID's judge is missing
    out = tmp_path / "report.json"
    rc = cli.main(["--pred", str(videos / "pred" / "clip_a.mp4"), "--target", str(videos / "gt" / "clip_a.mp4"),
                   "--weights", str(weights), "--size", "64", "--landmarks", str(videos / "landmarks"),
                   "--metrics", "psnr,efid,au_f1,sync,ccc,fid", "--json", str(out), "-q"])
    assert rc == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    for key in ("psnr", "efid", "sync_conf", "sync_dist", "sync_offset", "ccc_v", "ccc_a"):
        assert isinstance(report["metrics"][key], float), key
    assert "au_f1" in report["metrics"] or "au_f1" in report["unavailable"]  # tiny AUs may be absent everywhere
    assert "fid" in report["unavailable"] and inception.SPEC.name in report["unavailable"]["fid"]
    assert "fid" not in report["metrics"]
    assert next(ln for ln in table.splitlines() if ln.startswith("fid")).split(None, 1)[1].startswith("unavailable:")
    assert report["counts"]["face_videos"] == 1 and report["counts"]["face_frames"] == 35
    assert report["per_video"]["clip_a"]["sync_conf"] == pytest.approx(report["metrics"]["sync_conf"])
    assert "ssim" not in report["metrics"] and "ssim" not in report["protocol"]


def test_cli_errors_and_module_entry(videos, weights_dir, tmp_path):
    assert cli.main(["--pred", str(tmp_path / "nothing"), "--target", str(videos / "gt"), "-q"]) == 2
    assert cli.main(["--pred", str(videos / "pred"), "--target", str(videos / "gt"), "--metrics", "psnr,bogus", "-q"]) == 2
    run = subprocess.run([sys.executable, "-m", "model.metrics", "--pred", str(videos / "pred"), "--target", str(videos / "gt"),
                          "--metrics", "psnr,ssim", "--size", "32", "-q"], check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].startswith("psnr") and "unavailable" not in run.stdout
