import hashlib
import tarfile

import pytest

from core.clip import Clip
from core.shards import AtomicDir, Reject, ShardParams, iter_samples, read_manifest, read_rejects, write_clip_shards, write_sidecars


def clip(tmp_path, key, size):
    mp4, wav = tmp_path / f"{key}.mp4", tmp_path / f"{key}.wav"
    mp4.write_bytes(b"m" * size)
    wav.write_bytes(b"w" * 10)
    return Clip(key=key, dataset="d", source=f"/abs/{key}.mp4", source_rel=f"{key}.mp4", source_hash="h", start=0.0, duration=4.0,
                meta={"encode": {"frames": 100, "fps": 25, "sample_rate": 16000}, "source": {"speaker": "s1"}},
                scores={"yaw": 1.5}, files={"mp4": str(mp4), "wav": str(wav)}, file_hashes={"mp4": "a", "wav": "b"})


def test_rollover_order_and_determinism(tmp_path):
    clips = [clip(tmp_path, f"d__c{i}__0000000", 4000) for i in (3, 1, 2, 0)]
    params = ShardParams(max_bytes=10_000)  # two ~4.8 kB samples (4 kB mp4 + the schema-2 json) per tar
    write_clip_shards(tmp_path / "a", clips, [Reject("d", "x.mp4", "", "probe", "unreadable", "m")], params)
    write_clip_shards(tmp_path / "b", list(reversed(clips)), [Reject("d", "x.mp4", "", "probe", "unreadable", "m")], params)
    tars = sorted((tmp_path / "a").glob("*.tar"))
    assert [t.name for t in tars] == ["clips-000000.tar", "clips-000001.tar"]
    for name in ["clips-000000.tar", "clips-000001.tar", "manifest.parquet", "rejects.parquet"]:
        assert hashlib.sha256((tmp_path / "a" / name).read_bytes()).digest() == hashlib.sha256((tmp_path / "b" / name).read_bytes()).digest()
    with tarfile.open(tars[0]) as t:
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in t.getmembers())
    rows = read_manifest(tmp_path / "a").to_pylist()
    assert [r["key"] for r in rows] == sorted(c.key for c in clips)
    assert rows[0]["score_yaw"] == 1.5 and rows[0]["speaker"] == "s1" and rows[0]["frames"] == 100
    assert read_rejects(tmp_path / "a").to_pylist()[0]["reason"] == "unreadable"


def test_duplicate_keys_are_an_error(tmp_path):
    c = clip(tmp_path, "k", 10)
    with pytest.raises(ValueError, match="duplicate clip key k"):
        write_clip_shards(tmp_path / "o", [c, c], [], ShardParams())


def test_failed_write_keeps_the_previous_set(tmp_path):
    out = tmp_path / "o"
    write_clip_shards(out, [clip(tmp_path, "k", 10)], [], ShardParams())
    before = (out / "clips-000000.tar").read_bytes()
    broken = clip(tmp_path, "z", 10).evolve(files={"mp4": str(tmp_path / "missing.mp4")})
    with pytest.raises(FileNotFoundError):
        write_clip_shards(out, [broken], [], ShardParams())
    assert (out / "clips-000000.tar").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o")] == []


def test_sidecars_follow_clip_shard_names_and_order(tmp_path):
    clips = [clip(tmp_path, f"c{i}", 4000) for i in range(4)]
    write_clip_shards(tmp_path / "clips", clips, [], ShardParams(max_bytes=9000))
    samples = {c.key: [("json", b"{}"), ("npy", c.key.encode())] for c in clips}
    write_sidecars(tmp_path / "side", tmp_path / "clips", samples)
    got = [(s["__key__"], s["__shard__"], s["npy"]) for s in iter_samples(tmp_path / "side")]
    want = [(s["__key__"], s["__shard__"], s["__key__"].encode()) for s in iter_samples(tmp_path / "clips")]
    assert got == want
    del samples["c2"]
    with pytest.raises(KeyError, match="lacks 1 clip"):
        write_sidecars(tmp_path / "side", tmp_path / "clips", samples)


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "old").write_text("x")
    with AtomicDir(target) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
