"""``python -m pipeline.export``: split-named WebDataset shards with joined features, a card, per-shard stats."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import webdataset as wds
import yaml

from core.clip import Clip
from core.shards import Member, ShardParams, write_clip_shards, write_sidecars
from pipeline import export


def _clip(root: Path, dataset: str, i: int) -> Clip:
    files, hashes = {}, {}
    for name, data in (("mp4", f"video {dataset} {i}".encode() * 40), ("wav", f"audio {dataset} {i}".encode() * 30),
                       ("landmarks.npy", bytes([i]) * 64)):
        path = root / "media" / f"{dataset}_{i}.{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[name], hashes[name] = str(path), hashlib.sha256(data).hexdigest()
    return Clip(key=f"{dataset}__v{i}__0000000", dataset=dataset, source=f"/raw/v{i}.mp4", source_rel=f"v{i}.mp4",
                source_hash=f"{i % 3:064d}", start=0.0, duration=3.0 + i, meta={"encode": {"fps": 25, "frames": (3 + i) * 25, "sample_rate": 16000}},
                files=files, file_hashes=hashes)


def make_project(root: Path, clips_per_dataset: int = 5) -> dict[str, list[str]]:
    """Two datasets of clip shards (two tars each), vocals and speech sidecars, train/val split lists."""
    keys: dict[str, list[str]] = {"train": [], "val": []}
    split_rows: dict[str, list[dict]] = {"train": [], "val": []}
    for dataset in ("alpha", "beta"):
        clips = [_clip(root, dataset, i) for i in range(clips_per_dataset)]
        folder = root / "shards" / "clips" / dataset
        table = write_clip_shards(folder, clips, [], ShardParams(max_count=3))
        shard = {r["key"]: r["shard"] for r in table.to_pylist()}
        for feature, members in (("vocals", (Member("wav", doc="the vocals track"),)), ("speech", ())):
            samples = {c.key: [("json", json.dumps({"status": "ok", "tiny": False, "feature": feature}).encode())]
                       + [(m.name, f"{feature} {c.key}".encode()) for m in members] for c in clips}
            write_sidecars(root / "shards" / "features" / feature / dataset, folder, samples,
                           extra_rows={c.key: {"status": "ok"} for c in clips}, members=members, feature=feature)
        for i, c in enumerate(clips):
            split = "val" if i == 2 else "train"
            keys[split].append(c.key)
            split_rows[split].append({"dataset": dataset, "key": c.key, "shard": shard[c.key], "frames": (3 + i) * 25, "speaker": f"s{i % 2}"})
    (root / "shards" / "splits").mkdir(parents=True)
    for split, rows in split_rows.items():
        (root / "shards" / "splits" / f"{split}.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows[::-1]))
    params = {"shards": {"root": "shards"}, "export": {"max_count": 3},
              "datasets": {d: {"adapter": "folder", "raw_dir": "raw"} for d in ("alpha", "beta")},
              "features": {"vocals": {}, "speech": {}}, "steps": {"face": {"enabled": True}}, "weights": {"profile": "tiny"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return keys


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    keys = make_project(root)
    summary = export.run("train", root / "out", root=root, params_file=root / "params.yaml")
    return root, keys, summary


def test_plain_webdataset_reads_every_sample_with_every_member(exported):
    root, keys, summary = exported
    tars = sorted(str(p) for p in (root / "out").glob("train-*.tar"))
    assert [Path(t).name for t in tars] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]  # 8 samples, 3 a tar
    got = list(wds.WebDataset(tars, shardshuffle=False))
    assert [s["__key__"] for s in got] == sorted(keys["train"])  # every train clip once, by dataset, shard, key; no val clip
    for s in got:
        members = {k for k in s if not k.startswith("__")}
        assert members == {"json", "mp4", "wav", "landmarks.npy", "vocals.json", "vocals.wav", "speech.json"}
        dataset, i = s["__key__"].split("__")[0], int(s["__key__"].split("__")[1][1:])
        assert s["mp4"] == f"video {dataset} {i}".encode() * 40 and s["vocals.wav"] == f"vocals {s['__key__']}".encode()
        assert json.loads(s["json"])["duration"] == 3.0 + i and json.loads(s["speech.json"])["feature"] == "speech"
    assert summary["clips"] == 8 and summary["features"] == ["speech", "vocals"]
    assert summary["datasets"]["alpha"] == {"adapter": "folder", "clips": 4, "hours": round((3 + 4 + 6 + 7) / 3600, 4), "sources": 2, "speakers": 2}  # source hashes i % 3: 0, 1, 0, 1


def test_stats_and_card(exported):
    root, keys, summary = exported
    out = root / "out"
    stats = [json.loads((out / f"train-{i:06d}_stats.json").read_text()) for i in range(3)]
    assert [s["samples"] for s in stats] == [3, 3, 2]
    assert all(s["bytes"] == (out / s["shard"]).stat().st_size for s in stats)
    assert sum(s["seconds"] for s in stats) == sum(3.0 + i for i in (0, 1, 3, 4)) * 2
    assert stats[0]["first_key"] == "alpha__v0__0000000" and stats[2]["datasets"] == {"beta": 2}
    card = (out / "README.md").read_text()
    for text in ("| train | 8 |", "| train | alpha | folder | 4 |", "`vocals.wav` | the vocals track", "mediapipe", "Apache-2.0",
                 "htdemucs", "wds.WebDataset", 'load_dataset("webdataset", data_files={"train": "train-*.tar"}'):
        assert text in card, text


def test_exports_are_byte_identical_and_features_selectable(exported, tmp_path, monkeypatch):
    root, keys, _ = exported
    again = tmp_path / "again"
    export.run("train", again, root=root, params_file=root / "params.yaml")
    first = {p.name: p.read_bytes() for p in sorted((root / "out").iterdir())}
    assert first == {p.name: p.read_bytes() for p in sorted(again.iterdir())}

    # val into the same folder: the card covers both splits; then train again with one feature
    export.run("val", again, root=root, params_file=root / "params.yaml")
    assert "| val | 2 |" in (again / "README.md").read_text() and "| train | 8 |" in (again / "README.md").read_text()
    export.run("train", again, ["vocals"], root=root, params_file=root / "params.yaml")
    sample = next(iter(wds.WebDataset(str(again / "train-000000.tar"), shardshuffle=False)))
    assert "vocals.wav" in sample and "speech.json" not in sample and (again / "val-000000.tar").is_file()

    # a feature without a sidecar, or an unknown split: exit status 2 naming the fix
    monkeypatch.chdir(root)  # the command runs from the project root
    args = ["--params", "params.yaml", "--out", str(tmp_path / "x")]
    assert export.main(["--split", "val", *args]) == 0 and (tmp_path / "x" / "val-000000.tar").is_file()
    assert export.main(["--split", "train", "--features", "sync", *args]) == 2
    assert export.main(["--split", "nosuch", *args]) == 2
