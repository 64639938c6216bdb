"""The ingest stage end to end on a generated folder dataset: rejects, shards, cache, determinism, resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import ingest
from core.shards import iter_samples, read_manifest, read_rejects
from tests.conftest import make_media

PARAMS = {
    "runner": {"local": True, "progress": False},
    "cache": {"dir": "cache"},
    "shards": {"root": "shards", "max_bytes": 60_000},
    "datasets": {"toy": {"adapter": "folder", "raw_dir": "raw", "speaker_from_dir": True}},
    "steps": {"face": {"enabled": False}, "encode": {"preset": "ultrafast"}},  # test patterns have no face: tests/pipeline/test_ingest_face.py
}


def make_dataset(root: Path) -> Path:
    raw = root / "raw"
    make_media(raw / "alice" / "a_24fps.mp4", seconds=4.0, fps="24", sample_rate=44100)
    make_media(raw / "alice" / "b_50fps.mp4", seconds=3.5, fps="50", sample_rate=48000)
    make_media(raw / "bob" / "long.mp4", seconds=23.0, size="48x48")
    make_media(raw / "bob" / "vfr.mp4", seconds=4.0, vfr=True)
    make_media(raw / "bob" / "silent_film.mp4", seconds=4.0, audio=False)
    make_media(raw / "bob" / "short.mp4", seconds=2.0)
    make_media(raw / "carol" / "radio.m4a", seconds=4.0, video=False)  # suffix not a video: not listed
    make_media(raw / "carol" / "radio.mp4", seconds=4.0, video=False)  # audio in an mp4 container
    (raw / "carol" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2000)
    return raw


def write_params(root: Path, **overrides) -> Path:
    data = json.loads(json.dumps(PARAMS))
    for dotted, value in overrides.items():
        node = data
        *parts, last = dotted.split(".")
        for p in parts:
            node = node.setdefault(p, {})
        node[last] = value
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(root: Path, **overrides) -> dict:
    return ingest.run("toy", root=root, params_file=write_params(root, **overrides))


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    make_dataset(root)
    report = run(root)
    return root, report


def test_every_source_ends_as_clips_or_a_reason_coded_reject(first):
    root, report = first
    out = root / "shards" / "clips" / "toy"
    rejects = {r["source"]: r for r in read_rejects(out).to_pylist()}
    assert {s: r["reason"] for s, r in rejects.items()} == {
        "bob/silent_film.mp4": "no_audio", "bob/short.mp4": "too_short",
        "carol/radio.mp4": "no_video", "carol/broken.mp4": "unreadable",
    }
    assert all(r["message"] for r in rejects.values())
    manifest = read_manifest(out).to_pylist()
    assert sorted({m["source"] for m in manifest}) == ["alice/a_24fps.mp4", "alice/b_50fps.mp4", "bob/long.mp4", "bob/vfr.mp4"]
    assert len([m for m in manifest if m["source"] == "bob/long.mp4"]) == 2  # 23 s split
    assert all(3.0 <= m["duration"] <= 20.0 and m["fps"] == 25 and m["sample_rate"] == 16000 for m in manifest)
    assert {m["speaker"] for m in manifest} == {"alice", "bob"}
    assert report["kept"] == 5 and report["dropped_by_reason"] == {"no_audio": 1, "no_video": 1, "too_short": 1, "unreadable": 1}
    saved = json.loads((root / "reports" / "ingest" / "toy.json").read_text())  # details: what happened to the data
    assert saved["kept"] == 5 and saved["steps"]["encode"] == {"in": 5, "out": 5, "dropped": 0}
    run = json.loads((root / "reports" / "runs" / "ingest-toy.json").read_text())  # how this execution went
    assert run["steps"]["encode"]["computed"] == 5 and run["clips_per_s"] > 0 and run["seconds"] > 0
    metrics = json.loads((root / "reports" / "metrics" / "ingest-toy.json").read_text())  # the DVC metrics: five numbers
    hours = sum(m["duration"] for m in manifest) / 3600
    assert list(metrics) == ["sources", "kept", "dropped", "hours", "tiny"]
    assert (metrics["sources"], metrics["kept"], metrics["dropped"], metrics["tiny"]) == (8, 5, 4, 0)
    assert metrics["hours"] == pytest.approx(hours, abs=1e-4)
    plots = root / "reports" / "plots" / "ingest" / "toy"
    durations = [line.split(",") for line in (plots / "durations.csv").read_text().splitlines()[1:]]
    assert sum(int(n) for _, n in durations) == 5 and [float(s) for s, _ in durations] == sorted(float(s) for s, _ in durations)
    assert (plots / "drops.csv").read_text() == "reason,count\nno_audio,1\nno_video,1\ntoo_short,1\nunreadable,1\n"


def test_shards_hold_aligned_members_in_key_order(first):
    root, _ = first
    out = root / "shards" / "clips" / "toy"
    assert len(list(out.glob("clips-*.tar"))) > 1  # max_bytes forces several shards
    samples = list(iter_samples(out))
    manifest = read_manifest(out).to_pylist()
    assert [s["__key__"] for s in samples] == [m["key"] for m in manifest] == sorted(m["key"] for m in manifest)
    assert [s["__shard__"] for s in samples] == [m["shard"] for m in manifest]
    for s, m in zip(samples, manifest):
        assert set(s) == {"__key__", "__shard__", "json", "mp4", "wav"}
        meta = json.loads(s["json"])
        assert meta["key"] == s["__key__"] and "." not in s["__key__"]
        assert meta["frames"] == m["frames"] and meta["meta"]["probe"]["video_codec"] == "h264"
        assert len(s["wav"]) == 44 + m["frames"] * 640 * 2  # 16-bit mono PCM, same duration as the video
        assert hashlib.sha256(s["mp4"]).hexdigest() == meta["file_hashes"]["mp4"]


def test_rerun_is_all_cache_hits_and_identical(first):
    root, _ = first
    before = digests(root / "shards" / "clips" / "toy")
    report = run(root)
    assert all(s["computed"] == 0 for s in report["steps"].values())
    assert digests(root / "shards" / "clips" / "toy") == before


def test_fresh_cache_gives_byte_identical_shards(first, tmp_path):
    root, _ = first
    make_dataset(tmp_path)
    run(tmp_path)
    assert digests(tmp_path / "shards" / "clips" / "toy") == digests(root / "shards" / "clips" / "toy")


def test_adding_a_video_computes_only_that_video(first):
    root, _ = first
    new = make_media(root / "raw" / "dave" / "new.mp4", seconds=3.2)
    try:
        report = run(root)
        assert {k: s["computed"] for k, s in report["steps"].items()} == {"probe": 1, "audio": 1, "segment": 1, "encode": 1}
        assert report["kept"] == 6
    finally:
        new.unlink()
        new.parent.rmdir()
        run(root)


def test_changing_one_steps_params_recomputes_only_that_step(first):
    root, _ = first
    report = run(root, **{"steps.encode.crf": 30})
    computed = {k: s["computed"] for k, s in report["steps"].items()}
    assert computed == {"probe": 0, "audio": 0, "segment": 0, "encode": 5}
    report = run(root, **{"steps.segment.max_s": 15.0})  # long.mp4 is cut elsewhere: only its clips change
    computed = {k: s["computed"] for k, s in report["steps"].items()}
    assert computed["probe"] == computed["audio"] == 0 and computed["segment"] == 5 and computed["encode"] == 2
    run(root)


def test_a_killed_run_resumes_and_writes_the_same_shards(first, tmp_path):
    root, _ = first
    make_dataset(tmp_path)
    params = write_params(tmp_path, **{"steps.encode.preset": "ultrafast"})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "pipeline.ingest", "toy", "--params", str(params)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    encode_dir = tmp_path / "cache" / "encode"
    deadline = time.time() + 120
    while time.time() < deadline and not (encode_dir.exists() and any(encode_dir.glob("*/*/record.json"))):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(encode_dir.glob("*/*/record.json")))
    assert 1 <= done < 5, "the run should be killed half-way through encoding"
    assert not (tmp_path / "shards" / "clips" / "toy").exists()

    report = ingest.run("toy", root=tmp_path, params_file=params)
    assert report["steps"]["encode"]["cached"] >= done
    assert report["steps"]["encode"]["computed"] == 5 - report["steps"]["encode"]["cached"]
    assert digests(tmp_path / "shards" / "clips" / "toy") == digests(root / "shards" / "clips" / "toy")


def test_unknown_dataset_and_bad_raw_dir_are_clear_errors(tmp_path):
    from pipeline.datasets import DatasetError
    from core.params import ParamsError

    params = write_params(tmp_path)
    with pytest.raises(ParamsError, match="missing section 'datasets.nope'"):
        ingest.run("nope", root=tmp_path, params_file=params)
    with pytest.raises(DatasetError, match="raw_dir: folder .* does not exist"):
        ingest.run("toy", root=tmp_path, params_file=params)
    assert ingest.main(["nope", "--params", str(params)]) == 2
