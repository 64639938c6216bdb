"""Ground-truth target features computed by judges on the clip's own frames: sync (and the per-frame face
judges), with tiny stand-in weights, on clips cut from a real talking-head video."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from core.clip import Clip
from core.shards import (
    ShardParams,
    iter_samples,
    read_manifest,
    read_members,
    write_clip_shards,
)
from pipeline import extract
from pipeline.face_geometry import canonical_face

REAL = Path(__file__).resolve().parents[4] / "shared" / "data" / "real" / "videos" / "v01_frontal_hdtf_katiehill_25fps_a16k.mp4"
DURATIONS = (3.0, 3.64)


def _landmarks(frames: int) -> np.ndarray:
    """The canonical MediaPipe face placed over v01's face (x 150..360, y 110..420 of the 512 frame), nodding."""
    face = canonical_face()[:, :3].astype(np.float64)
    lo, hi = face[:, :2].min(0), face[:, :2].max(0)
    unit = (face[:, :2] - lo) / (hi - lo)
    out = np.empty((frames, 478, 3), np.float32)
    for t in range(frames):
        out[t, :, 0] = 150 + unit[:, 0] * 210
        out[t, :, 1] = 110 + unit[:, 1] * 310 + 3 * np.sin(t / 5)
        out[t, :, 2] = face[:, 2]
    return out.astype(np.float16)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if not REAL.is_file():
        pytest.skip(f"real clips not found at {REAL.parent} (../shared/data/real)")
    root = tmp_path_factory.mktemp("targets")
    media = root / "media"
    media.mkdir()
    clips = []
    for i, seconds in enumerate(DURATIONS):
        frames = int(round(seconds * 25))
        mp4, wav, lm = media / f"c{i}.mp4", media / f"c{i}.wav", media / f"c{i}.landmarks.npy"
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-ss", f"{i * 2.0}", "-i", str(REAL), "-frames:v", str(frames),
                        "-an", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
                        "-movflags", "+faststart", str(mp4)], check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-ss", f"{i * 2.0}", "-i", str(REAL), "-t", f"{frames / 25}",
                        "-vn", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(wav)], check=True)
        np.save(lm, _landmarks(frames))
        meta = {"encode": {"frames": frames, "fps": 25, "sample_rate": 16000, "width": 512, "height": 512}}
        clips.append(Clip(key=f"toy__c{i}__0000000", dataset="toy", source=f"c{i}.mp4", source_rel=f"c{i}.mp4",
                          source_hash=f"{i:064d}", start=0.0, duration=frames / 25, meta=meta,
                          files={"mp4": str(mp4), "wav": str(wav), "landmarks.npy": str(lm)}))
    write_clip_shards(root / "shards" / "clips" / "toy", clips, [], ShardParams())
    params = {
        "runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards"},
        "weights": {"profile": "tiny", "dir": "weights", "backbone": False},
        "features": {"sync": {"frame_batch": 16}, "face_va": {"frame_batch": 16},
                     "action_units": {"frame_batch": 16, "frame_stride": 3}, "clip_image": {"frame_batch": 16}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _sidecar(project, feature):
    side = project / "shards" / "features" / feature / "toy"
    return {s["__key__"]: s for s in iter_samples(side)}, read_manifest(side).to_pylist(), read_members(side)


def test_sync_writes_per_frame_embeddings_and_scores_and_hits_the_cache(project):
    report = extract.run("sync", "toy", root=project, params_file=project / "params.yaml")
    assert report["kept"] == 2 and report["tiny_weights"] is True
    samples, rows, members = _sidecar(project, "sync")
    assert [m.name for m in members] == ["video.npy", "audio.npy"]
    for seconds, (key, s) in zip(DURATIONS, sorted(samples.items())):
        frames = int(round(seconds * 25))
        body = json.loads(s["json"])
        assert body["status"] == "ok" and body["tiny"] is True
        values = body["values"]
        assert values["windows"] == frames - 5  # syncnet_python's lastframe: min(frames, samples // 640) - 5
        assert len(values["mean_dists"]) == 31 and values["confidence"] >= 0
        video, audio = np.load(io.BytesIO(s["video.npy"])), np.load(io.BytesIO(s["audio.npy"]))
        assert video.shape == audio.shape == (frames, 32) and video.dtype == np.float16
        assert np.isfinite(video).all() and np.isfinite(audio).all()
        assert (video[-1] == video[values["windows"] - 1]).all()  # the tail repeats the last full window
        for m in members:
            m.check(s[m.name], frames)
    for row in rows:
        assert {"score_sync_confidence", "score_sync_offset", "score_sync_offset_abs", "score_sync_min_dist"} <= set(row)
        assert abs(row["score_sync_offset"]) == row["score_sync_offset_abs"] <= 15
    again = extract.run("sync", "toy", root=project, params_file=project / "params.yaml")
    assert again["steps"]["sync"]["cached"] == 2 and again["steps"]["sync"]["computed"] == 0


@pytest.mark.parametrize("feature, entries", [
    ("face_va", {"frames.npy": (2, -1.0, 1.0), "expression.npy": (8, 0.0, 1.0)}),
    ("action_units", {"frames.npy": (12, 0.0, 1.0)}),
    ("clip_image", {"frames.npy": (16, -1.0, 1.0)}),
])
def test_face_judges_write_one_row_per_frame(project, feature, entries):
    report = extract.run(feature, "toy", root=project, params_file=project / "params.yaml")
    assert report["kept"] == 2 and report["tiny_weights"] is True
    samples, rows, members = _sidecar(project, feature)
    assert sorted(m.name for m in members) == sorted(entries)
    stride = yaml.safe_load((project / "params.yaml").read_text())["features"][feature].get("frame_stride", 1)
    for seconds, (key, s) in zip(DURATIONS, sorted(samples.items())):
        frames = int(round(seconds * 25))
        body = json.loads(s["json"])
        assert body["status"] == "ok" and body["values"]["frames"] == frames and body["values"]["frame_stride"] == stride
        for name, (width, lo, hi) in entries.items():
            array = np.load(io.BytesIO(s[name]))
            declared = next(m for m in members if m.name == name)
            assert array.shape == (frames, width) and array.dtype == np.dtype(declared.dtype)
            assert np.isfinite(array).all() and array.min() >= lo and array.max() <= hi
            if stride > 1:  # judged frames 0, k, 2k ... and the last; the others copy the nearest
                assert (array[1] == array[0]).all() and (array[2] == array[3]).all()
        if feature == "clip_image":
            assert np.allclose(np.linalg.norm(np.load(io.BytesIO(s["frames.npy"])).astype(np.float32), axis=1), 1.0, atol=2e-3)
        if feature == "face_va":
            assert np.allclose(np.load(io.BytesIO(s["expression.npy"])).sum(axis=1), 1.0, atol=1e-5)


def test_the_target_stages_drivers_import_no_torch():
    """A stage's driver imports its feature module for the weights specs and member declarations only: for the
    frame judges that costs no torch import (the networks load in the workers)."""
    code = ("import sys\nimport pipeline.features.sync, pipeline.features.face_va, pipeline.features.action_units\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "print(pipeline.features.face_va.WEIGHTS[0].name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "emonet_8", out.stderr[-2000:]
