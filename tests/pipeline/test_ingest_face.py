"""Ingest with the face steps on small rendered talking faces: drops, crop shards, threshold re-runs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import yaml

from pipeline import ingest
from core.media import ffprobe
from core.shards import iter_samples, read_manifest, read_rejects
from tests.pipeline.test_ingest import PARAMS

FACE_PARAMS = {**PARAMS, "steps": {"face": {"size": 256}, "encode": {"preset": "ultrafast"}},
               "datasets": {"faces": {"adapter": "folder", "raw_dir": "raw"}}}


def run(root, **overrides):
    data = json.loads(json.dumps(FACE_PARAMS))
    for dotted, value in overrides.items():
        *parts, last = dotted.split(".")
        node = data
        for part in parts:
            node = node.setdefault(part, {})
        node[last] = value
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return ingest.run("faces", root=root, params_file=path)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    from pipeline.demo_data.render import Renderer, render_talking_clip

    root = tmp_path_factory.mktemp("ingest_face")
    (root / "raw").mkdir()
    specs = {"frontal.mp4": {}, "two_faces.mp4": {"faces": 2}, "head_turn_60.mp4": {"yaw_deg": 60.0, "speaker": "spk_b"}}
    renderer = Renderer()
    for i, (name, kw) in enumerate(specs.items()):
        render_talking_clip(root / "raw" / name, 3.2, 25, sample_rate=16000, channels=1, seed=i, size=192, renderer=renderer, **kw)
    return root, run(root)


def test_face_drops_and_crop_shards(first):
    root, report = first
    out = root / "shards" / "clips" / "faces"
    assert {r["source"]: r["reason"] for r in read_rejects(out).to_pylist()} == {"two_faces.mp4": "multi_face", "head_turn_60.mp4": "profile"}
    assert report["dropped_by_reason"] == {"multi_face": 1, "profile": 1}
    (row,) = read_manifest(out).to_pylist()
    assert row["source"] == "frontal.mp4" and (row["width"], row["height"]) == (256, 256)
    assert row["score_face_fraction"] == 1.0 and row["score_yaw_abs_median"] < 10 and row["score_faces_max"] == 1
    (s,) = list(iter_samples(out))
    assert set(s) == {"__key__", "__shard__", "json", "mp4", "wav", "landmarks.npy"}
    meta = json.loads(s["json"])
    lm = np.load(io.BytesIO(s["landmarks.npy"]))
    assert lm.dtype == np.float16 and lm.shape == (row["frames"], 478, 3)
    face = meta["meta"]["face"]  # schema 2: named per-frame columns with units
    assert meta["schema_version"] == 2 and meta["units"]["meta.face.pose"] == "degrees"
    assert set(face["pose"]) == {"yaw_deg", "pitch_deg", "roll_deg"} and set(face["crop"]) == {"cx_px", "cy_px", "side_px"}
    assert all(len(col) == row["frames"] for col in (*face["pose"].values(), *face["crop"].values(), face["tracked"]))
    assert abs(float(np.median(face["pose"]["yaw_deg"]))) < 10 and all(isinstance(t, bool) for t in face["tracked"])
    assert meta["file_hashes"]["landmarks.npy"]
    mp4 = out.parent / "frontal.mp4"
    mp4.write_bytes(s["mp4"])
    v, a = ffprobe(mp4)["streams"]  # the face crop, and the clip's sound as AAC for a player
    assert (v["width"], v["height"], int(v["nb_frames"])) == (256, 256, row["frames"])
    assert a["codec_name"] == "aac" and int(a["sample_rate"]) == 16000 and abs(float(a["duration"]) - row["duration"]) < 0.1
    mp4.unlink()


def test_changing_a_threshold_does_not_rerun_the_face_step(first):
    root, _ = first
    report = run(root, **{"steps.face_filter.max_yaw": 80.0})  # the head turn is kept now
    computed = {k: s["computed"] for k, s in report["steps"].items()}
    assert computed == {"probe": 0, "audio": 0, "segment": 0, "face": 0, "face_filter": 3, "encode": 1}
    assert report["kept"] == 2
    report = run(root)
    assert report["kept"] == 1 and report["steps"]["face"]["computed"] == 0 and report["steps"]["encode"]["computed"] == 0
