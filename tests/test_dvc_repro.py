"""The README's main job: `dvc repro` on the embedded sample, in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.shards import read_manifest, read_rejects

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"  # the real clips beside the repository


def sh(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def lock_differences(committed: str, produced: str) -> list[str]:
    """``stage: path`` of every dep or output whose hash (or value) differs between two dvc.lock texts."""
    import yaml

    def entries(text: str) -> dict[str, str]:
        stages = (yaml.safe_load(text) or {}).get("stages", {})
        return {f"{name}: {kind} {item.get('path')}": str({k: v for k, v in item.items() if k in ("md5", "hash", "size", "nfiles")})
                for name, stage in stages.items() for kind in ("deps", "outs") for item in stage.get(kind, [])} | {
                f"{name}: params": str(stage.get("params")) for name, stage in stages.items()}

    a, b = entries(committed), entries(produced)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the whole pipeline, training and evaluation included: ~10 min on a busy 2-core machine
def test_dvc_repro_on_the_sample(tmp_path):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    work = tmp_path / "repo"
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    committed_lock = (work / "dvc.lock").read_text() if (work / "dvc.lock").is_file() else None
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env.pop("SYNCHRORAMA_PARAMS", None)
    # an activated shell, not make: none of the Makefile's variables (the stage commands default them, core.cli),
    # and not its PYTHONHASHSEED=0 either: no output may depend on set order
    for name in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    env["PYTHONHASHSEED"] = "7"
    sh(["git", "init", "-q"], work, env)
    # a clone has a commit (dvclive, which the training stages log with, reads HEAD)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], work, env)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init"], work, env)

    out = sh(["dvc", "repro"], work, env)
    assert "Running stage 'ingest@sample'" in out
    # a fresh clone (cold per-clip cache, no outputs) reproduces the committed dvc.lock: no output holds a
    # timing, a path or anything else that differs between machines or runs (those are in reports/runs/)
    assert committed_lock is not None and not lock_differences(committed_lock, (work / "dvc.lock").read_text()), (
        f"dvc.lock differs from the committed one: {lock_differences(committed_lock, (work / 'dvc.lock').read_text())}; "
        "if the code changed on purpose, run `dvc repro` and commit dvc.lock; else an output is not deterministic")
    assert json.loads((work / "reports" / "runs" / "ingest-sample.json").read_text())["cached"] == 0  # it was cold

    shards = work / "shards" / "clips" / "sample"
    manifest = read_manifest(shards).to_pylist()
    reasons = {r["source"]: r["reason"] for r in read_rejects(shards).to_pylist()}
    assert reasons == {"corrupt_truncated.mp4": "unreadable", "no_audio.mp4": "no_audio", "short_2s.mp4": "too_short",
                       "two_faces.mp4": "multi_face", "head_turn_60.mp4": "profile"}
    sources = {r["source"] for r in manifest}
    assert {"clean_24fps_44k.mp4", "clean_2997fps_48k.mp4", "clean_30fps_44k.mp4", "clean_50fps_48k.mp4", "long_26s.mp4",
            "music_under_speech.mp4", "vfr_jitter.mkv", "audio_offset_500ms.mp4"} == sources
    assert all((r["width"], r["height"]) == (512, 512) and r["score_yaw_abs_median"] < 10 for r in manifest)  # face crops
    assert len([r for r in manifest if r["source"] == "long_26s.mp4"]) == 2
    assert all(3.0 <= r["duration"] <= 20.0 and r["fps"] == 25 and r["sample_rate"] == 16000 for r in manifest)
    metrics = json.loads((work / "reports" / "ingest" / "sample.json").read_text())
    assert metrics["kept"] == len(manifest) == 9
    run = json.loads((work / "reports" / "runs" / "ingest-sample.json").read_text())
    assert run["runner"] == "processes" and run["computed"] > 0  # no cluster address: local workers
    assert "unreadable" in (work / "reports" / "data.md").read_text()
    assert "multi_face" in (work / "reports" / "data.md").read_text() and "profile" in (work / "reports" / "data.md").read_text()

    # audio features: one extract@<feature>-sample stage each, sidecars aligned with the clip shards
    import io

    import numpy as np

    from core.shards import iter_samples

    frames = {r["key"]: r["frames"] for r in manifest}
    for feature in ("vocals", "speech", "audio_embed", "transcript", "emotion_text", "emotion_speech", "valence_arousal", "caption",
                    "sync", "face_va", "action_units", "clip_image"):
        assert f"Running stage 'extract@{feature}-sample'" in out
        report = json.loads((work / "reports" / "extract" / f"{feature}-sample.json").read_text())
        assert report["kept"] == len(manifest), report
        side = work / "shards" / "features" / feature / "sample"
        assert read_manifest(side).column("key").to_pylist() == [r["key"] for r in manifest]
    for s in iter_samples(work / "shards" / "features" / "audio_embed" / "sample"):
        assert np.load(io.BytesIO(s["npy"])).shape[0] == frames[s["__key__"]]  # one vector per video frame
    for feature, member in (("emotion_text", "frames.npy"), ("emotion_speech", "frames.npy"), ("valence_arousal", "frames.npy")):
        for s in iter_samples(work / "shards" / "features" / feature / "sample"):
            assert np.load(io.BytesIO(s[member])).shape[0] == frames[s["__key__"]], (feature, s["__key__"])
            assert json.loads(s["json"])["tiny"] is True  # computed with tiny stand-ins, and says so
    for s in iter_samples(work / "shards" / "features" / "caption" / "sample"):
        assert np.load(io.BytesIO(s["text_states.npy"])).shape[0] == 77 and json.loads(s["json"])["values"]["caption"] is not None
    assert f"- speech: ok: {len(manifest)}" in (work / "reports" / "data.md").read_text()

    # select: every clip decided, splits identity-disjoint lists
    assert "Running stage 'select'" in out
    decisions = json.loads((work / "reports" / "select" / "select.json").read_text())
    splits = {name: (work / "shards" / "splits" / f"{name}.jsonl").read_text().splitlines() for name in ("train", "val", "test")}
    assert sum(len(v) for v in splits.values()) + sum(decisions["dropped_by_reason"].values()) == len(manifest), decisions
    assert (work / "reports" / "index.html").stat().st_size > 10_000

    # ground-truth targets: one row per frame, labelled tiny
    for feature in ("sync", "face_va", "action_units", "clip_image"):
        for s in iter_samples(work / "shards" / "features" / feature / "sample"):
            body = json.loads(s["json"])
            assert body["tiny"] is True and body["values"].get("frames", frames[s["__key__"]]) == frames[s["__key__"]]
            assert np.load(io.BytesIO(s["video.npy" if feature == "sync" else "frames.npy"])).shape[0] == frames[s["__key__"]]

    # training: each stage a few steps with tiny weights, checkpoints saved, dvclive metrics written
    for stage in ("a2m", "stage1", "stage2"):
        assert f"Running stage 'train@{stage}'" in out
        assert any((work / "checkpoints" / stage).iterdir()), stage
        assert (work / "reports" / "train" / stage / "metrics.json").is_file(), stage

    # evaluation: paper Table 1 on the test split with tiny weights, labelled tiny
    assert "Running stage 'eval_reference'" in out and "Running stage 'evaluate'" in out
    scores = json.loads((work / "reports" / "eval" / "metrics.json").read_text())
    assert scores["tiny"] == 1 and scores["clips"] == len(splits["test"]) > 0
    assert {"psnr", "ssim", "lpips", "fid", "fvd", "sync_conf", "ccc_v", "ccc_a"} <= set(scores), scores
    assert "Tiny stand-in weights" in (work / "reports" / "eval" / "table.md").read_text()
    assert len(list((work / "reports" / "eval" / "videos").glob("*.side_by_side.mp4"))) == min(3, len(splits["test"]))

    # generation from a reference image and a driving audio (1.2 s: 30 frames), with the trained tiny model
    drive = tmp_path / "drive.wav"
    sh(["ffmpeg", "-v", "error", "-y", "-i", str(REAL / "audio" / "a04_german_speech_48k_s24_stereo.wav"), "-t", "1.2", str(drive)], work, env)
    said = sh([sys.executable, "-m", "model.generate", "--image", str(REAL / "images" / "i04_woman_624.jpg"), "--audio", str(drive),
               "--out", str(tmp_path / "talk.mp4"), "--steps", "2", "-q"], work, env)
    assert "30 frames" in said and "tiny" in said
    probe = json.loads(sh(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(tmp_path / "talk.mp4")], work, env))
    video, audio = (next(s for s in probe["streams"] if s["codec_type"] == kind) for kind in ("video", "audio"))
    assert video["codec_name"] == "h264" and video["r_frame_rate"] == "25/1" and int(video["nb_read_frames"]) == 30
    assert abs(float(audio["duration"]) - 1.2) < 0.04

    again = sh(["dvc", "repro"], work, env)
    assert "Data and pipelines are up to date" in again
    shown = sh(["dvc", "metrics", "show", "reports/metrics"], work, env)  # six numbers per data stage: one narrow table
    assert "reports/metrics/ingest-sample.json" in shown and max(map(len, shown.splitlines())) <= 160, shown
    ingest_metrics = json.loads((work / "reports" / "metrics" / "ingest-sample.json").read_text())
    assert (ingest_metrics["sources"], ingest_metrics["kept"], ingest_metrics["dropped"], ingest_metrics["tiny"]) == (13, len(manifest), 5, 0)
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], work, env))  # every plot renders (vega specs with data)
    assert not plots.get("errors"), plots.get("errors")
    rendered = {path for path, renders in plots["data"].items() if renders and renders[0]["content"]["data"]["values"]}
    assert {"reports/plots/ingest/sample/durations.csv", "reports/plots/ingest/sample/drops.csv", "reports/plots/select/hours.csv",
            "reports/plots/select/scores/sample.speech_ratio.csv", "reports/eval/plots/per_clip.csv"} <= rendered, sorted(rendered)
    assert any(path.startswith("reports/train/stage1/plots/metrics") for path in rendered), sorted(rendered)
    rows = json.loads(sh(["dvc", "exp", "show", "--json"], work, env))  # no `!` cells in the workspace row
    exp = next(r for r in rows if r["rev"] == "workspace")
    assert len(exp["data"]["metrics"]) >= 19 and all("error" not in m for m in exp["data"]["metrics"].values()), exp["data"]["metrics"]

    # DVC-native outputs: linked from DVC's cache (stored once: .dvc/config cache.type), pushed to a (local)
    # remote, and a second clone pulls them back and is up to date
    assert all(p.stat().st_nlink == 2 for p in (work / "shards" / "clips" / "sample").glob("*.tar"))
    sh(["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")], work, env)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], work, env)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "run"], work, env)
    sh(["dvc", "push", "-q"], work, env)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(work), str(clone)], tmp_path, env)
    sh(["dvc", "pull", "-q"], clone, env)
    assert read_manifest(clone / "shards" / "clips" / "sample").to_pylist() == manifest
    assert (clone / "shards" / "splits" / "train.jsonl").read_text() == (work / "shards" / "splits" / "train.jsonl").read_text()
    # (the evaluate stage's reports/eval/metrics.json is still `cache: false`, so it is not pulled: status without it)
    status = sh(["dvc", "status", "--with-deps", "report", "train@stage2"], clone, env)
    assert "up to date" in status, status
