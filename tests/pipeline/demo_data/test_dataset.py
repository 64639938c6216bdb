"""The embedded demo dataset: deterministic, and each clip is what sample.json says it is.

One dataset is generated per test session (through the CLI, reading a params file) and shared;
the checks on it use ffprobe and MediaPipe, as ingest will.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from core import params as params_mod
from pipeline.datasets import sample as sample_adapter
from pipeline.demo_data import dataset as demo
from pipeline.demo_data.__main__ import main
from pipeline.demo_data.render import Renderer
from pipeline.demo_data.voice import envelope
from tests.pipeline.demo_data.helpers import frame_db

PURPOSES = {"clean", "long", "short", "no_audio", "corrupt", "music", "two_faces", "head_turn", "vfr", "offset"}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    params_file = root / "params.yaml"
    params_file.write_text("sample:\n  seed: 0\n")
    out = root / "data" / "sample"
    old = os.environ.get("SYNCHRORAMA_PARAMS")
    os.environ["SYNCHRORAMA_PARAMS"] = str(params_file)
    try:
        assert main(["--out", str(out)]) == 0
    finally:
        if old is None:
            del os.environ["SYNCHRORAMA_PARAMS"]
        else:
            os.environ["SYNCHRORAMA_PARAMS"] = old
    return out


@pytest.fixture(scope="session")
def manifest(dataset: Path) -> dict:
    return json.loads((dataset / "sample.json").read_text())


def clip(manifest: dict, purpose: str) -> dict:
    return next(c for c in manifest["clips"] if c["purpose"] == purpose)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def decode_frames(path: Path, width: int, height: int, every: int = 1, start: float = 0.0) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", str(start), "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)[::every]


def decode_audio(path: Path, sr: int = 16000) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32).astype(np.float64)


# ------------------------------------------------------------------------------------------
# The generated dataset


def test_manifest_lists_every_purpose_and_file(dataset: Path, manifest: dict) -> None:
    assert manifest["generator"] == "pipeline.sample"
    assert manifest["version"] == demo.VERSION
    assert manifest["params"] == params_mod.as_dict(demo.SampleParams(seed=0))
    assert {c["purpose"] for c in manifest["clips"]} == PURPOSES
    files = sorted(p.name for p in dataset.iterdir())
    assert files == sorted([c["file"] for c in manifest["clips"]] + ["sample.json"])
    assert not [p for p in dataset.parent.iterdir() if p.name.startswith(".")], "temp folders left behind"
    clean = [c for c in manifest["clips"] if c["purpose"] == "clean"]
    assert {c["fps_fraction"] for c in clean} >= {"24/1", "30000/1001", "30/1", "50/1"}
    assert {c["sample_rate"] for c in clean} == {44100, 48000}
    assert all(4.0 <= c["duration"] <= 8.0 for c in clean)
    assert len({c["speaker"] for c in manifest["clips"]}) >= 3


def test_same_bytes_every_run(dataset: Path, manifest: dict, tmp_path: Path) -> None:
    """Rebuilding clips gives identical bytes (a subset that covers every encoding path)."""
    p = demo.SampleParams(seed=0)
    plan = demo.clip_plan(p)
    renderer = Renderer()
    chosen = {"short", "no_audio", "corrupt", "vfr", "offset"}
    for index, spec in enumerate(plan):
        if spec.purpose not in chosen:
            continue
        entry = demo.build_clip(spec, index, tmp_path, p, renderer)
        assert entry == manifest["clips"][index]
        assert sha256(tmp_path / spec.file) == sha256(dataset / spec.file), spec.file
    assert not list(tmp_path.glob(".*")), "intermediate files left behind"


def test_streams_are_as_described(dataset: Path, manifest: dict) -> None:
    for c in manifest["clips"]:
        if c["purpose"] == "corrupt":
            continue
        info = probe(dataset / c["file"])
        video = [s for s in info["streams"] if s["codec_type"] == "video"]
        audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
        assert len(video) == 1, c["file"]
        v = video[0]
        assert (v["width"], v["height"]) == (c["width"], c["height"]), c["file"]
        assert v["r_frame_rate"] == c["fps_fraction"], c["file"]
        assert float(info["format"]["duration"]) == pytest.approx(c["duration"], abs=0.06), c["file"]
        if c["purpose"] == "no_audio":
            assert audio == []
            continue
        assert len(audio) == 1, c["file"]
        a = audio[0]
        assert int(a["sample_rate"]) == c["sample_rate"] and a["channels"] == c["channels"] == 2, c["file"]
        if c["purpose"] == "offset":
            # the audio track starts half a second after the video (less the AAC priming)
            assert float(a["start_time"]) == pytest.approx(0.5, abs=0.03)
            assert float(v["start_time"]) == 0.0
        elif c["purpose"] != "vfr":
            assert float(a["start_time"]) == pytest.approx(0.0, abs=1e-3), c["file"]
    assert clip(manifest, "long")["duration"] > 20
    assert clip(manifest, "short")["duration"] < 3
    assert clip(manifest, "two_faces")["width"] == 2 * clip(manifest, "two_faces")["height"]


def test_corrupt_file_is_unreadable(dataset: Path, manifest: dict) -> None:
    c = clip(manifest, "corrupt")
    result = subprocess.run(["ffprobe", "-v", "error", str(dataset / c["file"])], capture_output=True, text=True)
    assert result.returncode != 0
    assert "moov atom not found" in result.stderr


def test_vfr_clip_has_irregular_timestamps(dataset: Path, manifest: dict) -> None:
    c = clip(manifest, "vfr")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time", "-of", "csv=p=0", str(dataset / c["file"])],
        capture_output=True, text=True, check=True,
    ).stdout
    pts = np.sort(np.array([float(x) for x in out.split()]))
    steps = np.diff(pts)
    assert len(pts) == round(c["duration"] * c["fps"])
    assert steps.min() > 0
    assert steps.std() > 0.005 and steps.min() < 0.03 and steps.max() > 0.05
    assert steps.mean() == pytest.approx(1 / c["fps"], rel=0.05)


def test_long_clip_has_phrase_pauses_and_music_fills_them(dataset: Path, manifest: dict) -> None:
    db = frame_db(decode_audio(dataset / clip(manifest, "long")["file"]))
    quiet = db < -50
    # runs of near silence of at least 0.3 s (6 hops of 50 ms) inside the clip
    runs, n = [], 0
    for q in quiet:
        n = n + 1 if q else 0
        if n == 6:
            runs.append(1)
    assert len(runs) >= 5
    assert np.percentile(db, 90) > -25  # and loud speech between them
    music = frame_db(decode_audio(dataset / clip(manifest, "music")["file"]))
    assert np.percentile(music, 10) > -35  # no silence anywhere: the beat and chords carry on


# ------------------------------------------------------------------------------------------
# What MediaPipe sees


@pytest.fixture(scope="module")
def mp():
    import mediapipe

    return mediapipe


def test_two_faces_are_detected(dataset: Path, manifest: dict, mp) -> None:
    c = clip(manifest, "two_faces")
    frames = decode_frames(dataset / c["file"], c["width"], c["height"], every=40)
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as det:
        counts = [len(det.process(f).detections or []) for f in frames]
    assert len(counts) >= 3 and all(n == 2 for n in counts), counts


def mesh_points(mp, frames: np.ndarray) -> list[np.ndarray]:
    out = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as mesh:
        for f in frames:
            r = mesh.process(f)
            assert r.multi_face_landmarks, "no face found"
            h, w = f.shape[:2]
            out.append(np.array([(p.x * w, p.y * h, p.z * w) for p in r.multi_face_landmarks[0].landmark]))
    return out


def yaw_deg(points: np.ndarray) -> float:
    """Yaw from the line between the two sides of the face (landmarks 234 and 454) in x-z."""
    d = points[454] - points[234]
    return float(np.degrees(np.arctan2(d[2], d[0])))


def test_head_turn_is_measured_as_a_turn(dataset: Path, manifest: dict, mp) -> None:
    turn, clean = clip(manifest, "head_turn"), clip(manifest, "clean")
    assert turn["yaw_deg"] >= 55 and clean["yaw_deg"] == 0
    yaws = {}
    for c in (turn, clean):
        frames = decode_frames(dataset / c["file"], c["width"], c["height"], every=12, start=1.0)
        yaws[c["purpose"]] = np.array([yaw_deg(p) for p in mesh_points(mp, frames)])
    assert np.abs(yaws["clean"]).mean() < 10, yaws["clean"]
    assert np.abs(yaws["head_turn"]).mean() - np.abs(yaws["clean"]).mean() >= 30, yaws["head_turn"]
    assert np.abs(yaws["head_turn"]).min() >= 25


def test_mouth_opening_follows_the_audio(dataset: Path, manifest: dict, mp) -> None:
    c = next(c for c in manifest["clips"] if c["file"] == "clean_24fps_44k.mp4")
    frames = decode_frames(dataset / c["file"], c["width"], c["height"], every=2)
    times = np.arange(len(frames)) * 2 / c["fps"]
    gaps = []
    for p in mesh_points(mp, frames):
        gaps.append(np.linalg.norm(p[13, :2] - p[14, :2]) / np.linalg.norm(p[10, :2] - p[152, :2]))
    audio = decode_audio(dataset / c["file"])
    env = envelope(audio, 16000, times)
    r = np.corrcoef(gaps, env)[0, 1]
    assert r > 0.6, r


def test_adapter_lists_the_generated_dataset(dataset: Path, manifest: dict) -> None:
    sources = sample_adapter.list_sources(dataset, sample_adapter.Options())
    assert [s.rel for s in sources] == [c["file"] for c in manifest["clips"]]
    assert all(s.path.is_file() and s.meta["speaker"] and s.meta["purpose"] in PURPOSES for s in sources)


# ------------------------------------------------------------------------------------------
# Params and the output folder


def test_empty_params_section_gives_defaults_and_typos_are_errors(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text("sample: {}\n")
    assert params_mod.load(demo.SampleParams, "sample", f) == demo.SampleParams()
    f.write_text("sample:\n  sede: 1\n")
    with pytest.raises(params_mod.ParamsError, match="sede"):
        params_mod.load(demo.SampleParams, "sample", f)


def tiny_plan(p: demo.SampleParams) -> list[demo.ClipSpec]:
    return [demo.ClipSpec("tiny.mp4", "clean", "spk_a", 0.4, "25")]


def test_output_folder_is_replaced_atomically(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(demo, "clip_plan", tiny_plan)
    out = tmp_path / "data" / "sample"
    out.mkdir(parents=True)
    (out / "stale.mp4").write_bytes(b"old")
    demo.generate(out, demo.SampleParams(size=96))
    assert sorted(p.name for p in out.iterdir()) == ["sample.json", "tiny.mp4"]
    assert [p.name for p in out.parent.iterdir()] == ["sample"]

    def broken(*args, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(demo, "build_clip", broken)
    before = sha256(out / "tiny.mp4")
    with pytest.raises(RuntimeError, match="boom"):
        demo.generate(out, demo.SampleParams(size=96))
    assert sha256(out / "tiny.mp4") == before
    assert [p.name for p in out.parent.iterdir()] == ["sample"]
