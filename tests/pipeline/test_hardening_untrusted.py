"""Shards, cache entries and weights are untrusted input: crafted names never become paths, a tampered
cache record never publishes a host file, altered bytes are caught by their hash, a tampered Demucs
checkpoint is never unpickled, and a worker crash is counted and fails the stage."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from core.cli import StageFailed
from core.clip import Clip
from core.shards import MANIFEST, Reject, ShardFormatError, ShardParams, iter_samples, read_tar, write_clip_shards
from core.weights import WeightsError, fingerprint
from pipeline import ingest
from pipeline.cache import RECORD, Cache
from pipeline.extract import _blob, unpack_clips
from pipeline.features.vocals import verify_before_unpickling
from pipeline.stats import StageStats, check_error_share
from tests.conftest import make_media

CRAFTED = ["../../escape.mp4", "/tmp/escape.mp4", "k/../../escape.mp4", "k.mp4/../../escape", "k..mp4", "k.mp4.", ".mp4",
           "k\\..\\escape.mp4", "k .mp4", "k.m p4", "k"]


def _tar(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return path


def test_crafted_member_names_never_become_paths(tmp_path):
    for name in CRAFTED:
        with pytest.raises(ShardFormatError, match="not named <key>.<ext>|not a regular file"):
            list(read_tar(_tar(tmp_path / "one.tar", ["ok__k.json", name])))
    assert [s["__key__"] for s in read_tar(_tar(tmp_path / "good.tar", ["a-b__c_1.json", "a-b__c_1.landmarks.npy"]))] == ["a-b__c_1"]
    # The extract stage unpacks a crafted clip shard: an error, and nothing written outside the blob store.
    clips = tmp_path / "shards" / "clips" / "d"
    clips.mkdir(parents=True)
    pq.write_table(pa.table({"key": ["k"], "shard": ["clips-000000.tar"]}), clips / MANIFEST)
    _tar(clips / "clips-000000.tar", ["k.json", "k.mp4/../../../../escape"])
    cache = Cache(tmp_path / "cache")
    with pytest.raises(ShardFormatError):
        unpack_clips(clips, cache)
    with pytest.raises(ShardFormatError):
        _blob(cache, b"x", "../../../escape")
    assert not list(tmp_path.rglob("escape*"))
    blob = _blob(cache, b"media", "mp4")  # a link planted in place of a blob is replaced, never read through
    (tmp_path / "host.txt").write_text("host file")
    blob.unlink()
    blob.symlink_to(tmp_path / "host.txt")
    assert _blob(cache, b"media", "mp4") == blob and not blob.is_symlink() and blob.read_bytes() == b"media"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("tamper")
    make_media(root / "raw" / "a.mp4", seconds=0.8, size="32x32", gated=False)
    params = {"runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards"},
              "datasets": {"toy": {"adapter": "folder", "raw_dir": "raw"}},
              "steps": {"face": {"enabled": False}, "encode": {"preset": "ultrafast"}, "segment": {"min_s": 0.4, "max_s": 20.0}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    ingest.run("toy", root=root, params_file=root / "params.yaml")
    out = root / "shards" / "clips" / "toy"
    return root, {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _encode_record(root: Path) -> Path:
    (record,) = (root / "cache" / "encode").glob(f"*/*/{RECORD}")
    return record


def test_a_tampered_cache_record_never_publishes_a_host_file(ingested, tmp_path):
    root, before = ingested
    host = tmp_path / "host_secret.wav"
    host.write_bytes(b"SECRET" * 100)
    record = _encode_record(root)
    original = record.read_text()
    for path in (str(host), f"../../../../{host.relative_to('/')}", "encode/../../" + host.name):
        data = json.loads(original)
        data["clips"][0]["files"]["wav"] = path
        data["clips"][0]["file_hashes"]["wav"] = hashlib.sha256(host.read_bytes()).hexdigest()  # a consistent forgery
        record.write_text(json.dumps(data))
        report = ingest.run("toy", root=root, params_file=root / "params.yaml")
        assert report["steps"]["encode"]["computed"] == 1  # the entry was not trusted: recomputed
        out = root / "shards" / "clips" / "toy"
        assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == before
        assert all(b"SECRET" not in s["wav"] for s in iter_samples(out))
    # A link inside an entry that leads out of the cache is refused the same way.
    cache = Cache(root / "cache")
    entry = record.parent
    key = entry.name
    data = json.loads(record.read_text())
    wav = entry / Path(data["clips"][0]["files"]["wav"]).name
    wav.unlink()
    wav.symlink_to(host)
    assert cache.get("encode", key) is None
    assert ingest.run("toy", root=root, params_file=root / "params.yaml")["steps"]["encode"]["computed"] == 1  # replaced
    assert cache.get("encode", key) is not None and not Path(cache.get("encode", key)[0].files["wav"]).is_symlink()


def test_altered_cached_bytes_are_caught_by_their_hash_before_publishing(ingested):
    root, _ = ingested
    cache = Cache(root / "cache")
    record = _encode_record(root)
    (clip,) = cache.get("encode", record.parent.name)
    Path(clip.files["wav"]).write_bytes(b"RIFF altered")
    with pytest.raises(ShardFormatError, match="does not match the sha256 .* delete that cache entry"):
        write_clip_shards(root / "elsewhere", [clip], [], ShardParams())
    record.unlink()  # leave the module's cache consistent for the next test


def test_demucs_weights_are_verified_against_the_manifest_before_unpickling(tmp_path):
    folder = tmp_path / "weights" / "tiny" / "htdemucs"
    folder.mkdir(parents=True)
    (folder / "htdemucs.yaml").write_text("models: ['x']\n")
    (folder / "x.th").write_bytes(b"pickled weights")
    manifest = folder.parent / "manifest.json"
    manifest.write_text(json.dumps({"models": [{"name": "htdemucs", "sha256": fingerprint(folder)}]}))
    verify_before_unpickling(folder)  # matches: no error
    (folder / "x.th").write_bytes(b"pickled evil!!!")  # same size: a memo keyed on sizes would not notice
    with pytest.raises(WeightsError, match="do not match the sha256 in .*manifest.json.*not unpickled"):
        verify_before_unpickling(folder)
    manifest.write_text(json.dumps({"models": []}))
    with pytest.raises(WeightsError, match="records no sha256 for htdemucs"):
        verify_before_unpickling(folder)


def test_worker_crashes_are_counted_and_fail_the_stage(tmp_path):
    from pipeline.runner.schedule import StepOutcome

    clip = Clip(key="k", dataset="d", source="s", source_rel="s.mp4", source_hash="h")
    stats = StageStats("extract", "x")
    stats.add(StepOutcome("vocals", [clip], [[clip]], misses=1, crashes=2, retries=2))
    assert stats.run_record(kept=1, seconds=1.0)["worker_crashes"] == 2 and stats.run_steps["vocals"]["retries"] == 2
    assert "worker_crashes" not in stats.to_json(kept=1)  # run-dependent: not in the DVC-tracked details
    rejects = [Reject("d", "s.mp4", "k", "vocals", "error:WorkerCrashed", "3 times (exit code -9)")]
    with pytest.raises(StageFailed, match="1 item.* worker process died .* not cached: re-run"):
        check_error_share("extract@x", rejects, 100, 0.5, tmp_path / "rejects.parquet")
    check_error_share("extract@x", [Reject("d", "s.mp4", "k", "vocals", "error:ValueError", "m")], 100, 0.5, tmp_path / "r")
