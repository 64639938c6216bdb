"""select: thresholds on stored scores, identity-disjoint deterministic splits, test-only datasets."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import select
from core.params import ParamsError
from pipeline.report import _select_markdown
from core.shards import write_sidecars


def _clip_rows(dataset, n_speakers, clips_per_speaker):
    rows = []
    for s in range(n_speakers):
        for c in range(clips_per_speaker):
            i = s * clips_per_speaker + c
            rows.append({
                "key": f"{dataset}__s{s:02d}_v{c}__0000000", "shard": f"clips-{i // 7:06d}.tar", "dataset": dataset,
                "source": f"s{s:02d}/v{c}.mp4", "speaker": f"spk{s:02d}", "duration": 4.0 + (i % 5), "frames": int((4.0 + (i % 5)) * 25),
                # every 9th clip is a side profile, every 11th has a small face
                "score_face_fraction": 1.0, "score_multi_face_fraction": 0.0, "score_face_px": 40.0 if i % 11 == 3 else 200.0,
                "score_face_size": 0.3, "score_yaw_abs_median": 40.0 if i % 9 == 2 else 5.0, "score_pitch_abs_median": 3.0,
            })
    return rows


def _write_project(root, datasets, extra_select=None):
    """Manifests as ingest/extract write them: clips + vocals and speech sidecar manifests."""
    for name, (n_spk, per) in datasets.items():
        rows = _clip_rows(name, n_spk, per)
        (root / "shards" / "clips" / name).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), root / "shards" / "clips" / name / "manifest.parquet")
        for feature, col in (("vocals", "score_vocals_music_ratio"), ("speech", "score_speech_ratio")):
            side = []
            for i, r in enumerate(rows):
                if feature == "speech" and i % 13 == 5:
                    side.append({"key": r["key"], "shard": r["shard"], "status": "error:RuntimeError", col: None})
                else:
                    value = (0.9 if i % 7 == 4 else 0.1) if feature == "vocals" else (0.05 if i % 8 == 6 else 0.8)
                    side.append({"key": r["key"], "shard": r["shard"], "status": "ok", col: value})
            d = root / "shards" / "features" / feature / name
            d.mkdir(parents=True)
            pq.write_table(pa.Table.from_pylist(side), d / "manifest.parquet")
    entries = {name: {"adapter": "folder", "raw_dir": "raw", **({"test_only": True} if name.endswith("eval") else {})} for name in datasets}
    params = {"shards": {"root": "shards"}, "datasets": entries,
              "select": {"seed": 0, "val_fraction": 0.2, "test_fraction": 0.2,
                         "min_sync_confidence": None, "max_sync_offset": None,  # no sync sidecar in these projects
                         **(extra_select or {})}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def _run(root):
    report = select.run(root, root / "params.yaml")
    decisions = pq.read_table(root / "shards" / "splits" / "decisions.parquet").to_pylist()
    lists = {s: [json.loads(line) for line in (root / "shards" / "splits" / f"{s}.jsonl").read_text().splitlines()]
             for s in select.SPLITS}
    return report, decisions, lists


def test_splits_are_identity_disjoint_deterministic_and_test_only_goes_to_test(tmp_path):
    _write_project(tmp_path, {"wild": (30, 4), "hdtf_eval": (5, 3)})
    report, decisions, lists = _run(tmp_path)

    speakers = {s: {(r["dataset"], r["speaker"]) for r in lists[s]} for s in select.SPLITS}
    assert not speakers["train"] & speakers["val"] and not speakers["train"] & speakers["test"] and not speakers["val"] & speakers["test"]
    assert all(len(speakers[s]) > 0 for s in select.SPLITS)
    # a test-only dataset: every kept clip in test, none elsewhere
    eval_kept = [d for d in decisions if d["dataset"] == "hdtf_eval" and not d["reason"]]
    assert eval_kept and all(d["split"] == "test" for d in eval_kept)
    assert not any(r["dataset"] == "hdtf_eval" for s in ("train", "val") for r in lists[s])
    # lists agree with the decisions table and the report
    for s in select.SPLITS:
        assert sorted(r["key"] for r in lists[s]) == sorted(d["key"] for d in decisions if d["split"] == s)
        assert report["splits"][s]["clips"] == len(lists[s])
    assert all(set(r) == {"dataset", "key", "shard", "frames", "speaker"} for s in select.SPLITS for r in lists[s])
    md = _select_markdown(tmp_path / "reports" / "select" / "select.json")
    assert f"| test | {len(lists['test'])} |" in md and "profile: " in md
    metrics = json.loads((tmp_path / "reports" / "metrics" / "select.json").read_text())
    assert (metrics["sources"], metrics["kept"], metrics["dropped"]) == (len(decisions), report["kept"], report["dropped"])
    plots = tmp_path / "reports" / "plots" / "select"
    hours = dict(line.split(",") for line in (plots / "hours.csv").read_text().splitlines()[1:])
    assert {s: float(h) for s, h in hours.items()} == pytest.approx({s: report["splits"][s]["hours"] for s in select.SPLITS})
    drops = dict(line.split(",") for line in (plots / "drops.csv").read_text().splitlines()[1:])
    assert {r: int(n) for r, n in drops.items()} == report["dropped_by_reason"]
    speech = [line.split(",") for line in (plots / "scores" / "wild.speech_ratio.csv").read_text().splitlines()[1:]]
    assert len(speech) == 21 and float(speech[0][1]) == 0.05 and float(speech[-1][1]) == 0.8  # min and max of the stored scores

    # deterministic: a second run gives byte-identical lists; another seed moves speakers
    first = {s: (tmp_path / "shards" / "splits" / f"{s}.jsonl").read_bytes() for s in select.SPLITS}
    _run(tmp_path)
    assert first == {s: (tmp_path / "shards" / "splits" / f"{s}.jsonl").read_bytes() for s in select.SPLITS}
    assert select.split_of(0, "wild", "spk01", 0.2, 0.2) == select.split_of(0, "wild", "spk01", 0.2, 0.2)
    moved = [select.split_of(0, "wild", f"spk{i:02d}", 0.2, 0.2) != select.split_of(1, "wild", f"spk{i:02d}", 0.2, 0.2) for i in range(30)]
    assert any(moved)


def test_thresholds_drop_with_reasons_and_a_change_only_changes_decisions(tmp_path):
    _write_project(tmp_path, {"wild": (30, 4)})
    report, decisions, _ = _run(tmp_path)
    by_key = {d["key"]: d for d in decisions}
    rows = _clip_rows("wild", 30, 4)
    for i, r in enumerate(rows):
        reason = by_key[r["key"]]["reason"]
        if i % 11 == 3:
            assert reason == "face_too_small"
        elif i % 9 == 2:
            assert reason == "profile" and "score_yaw_abs_median" in by_key[r["key"]]["message"]
        elif i % 7 == 4:
            assert reason == "music"
        elif i % 8 == 6 and i % 13 != 5:  # no speech score where the speech sidecar failed
            assert reason == "no_speech"
        else:
            # a speech sidecar error is not a drop unless speech is required
            assert reason == "" and by_key[r["key"]]["split"] in select.SPLITS
    assert sum(report["dropped_by_reason"].values()) == report["dropped"] == sum(1 for d in decisions if d["reason"])
    assert report["unchecked"] == []

    # a looser yaw threshold: the profile clips come back, nothing else changes
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["steps"] = {"face_filter": {"max_yaw": 45.0}}  # the one home of the face thresholds
    params["select"]["required_features"] = ["speech"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    _, after, _ = _run(tmp_path)
    for i, (a, b) in enumerate(zip(decisions, after)):
        assert a["key"] == b["key"]
        if a["reason"] == "profile":
            assert b["reason"] in ("", "feature:speech:error:RuntimeError", "music", "no_speech")
        elif i % 13 == 5 and a["reason"] in ("", "music"):  # required features are checked before the audio scores
            assert b["reason"] == "feature:speech:error:RuntimeError"
        else:
            assert (a["reason"], a["split"]) == (b["reason"], b["split"])
        if b["reason"] == "" and a["reason"] == "":
            assert a["split"] == b["split"]  # a speaker's split depends on nothing but seed and id
    assert any(a["reason"] == "profile" and b["reason"] == "" for a, b in zip(decisions, after))

    # the generic score map and a threshold on an absent column
    params["select"]["scores"] = {"score_face_size": {"min": 0.5}, "score_not_there": {"max": 1.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    report, later, _ = _run(tmp_path)
    assert {d["reason"] for d in later} >= {"score:score_face_size"}
    assert report["unchecked"] == ["score_not_there"]


def test_bad_params_and_missing_required_sidecar_are_clear_errors(tmp_path):
    _write_project(tmp_path, {"wild": (3, 2)}, {"max_yaww": 3})
    with pytest.raises(ParamsError, match="max_yaww"):
        select.run(tmp_path, tmp_path / "params.yaml")
    _write_project(tmp_path / "b", {"wild": (3, 2)}, {"required_features": ["caption"]})
    with pytest.raises(FileNotFoundError, match="extract@caption-wild"):
        select.run(tmp_path / "b", tmp_path / "b" / "params.yaml")


def test_scores_from_tiny_weights_are_not_applied_unless_asked(tmp_path):
    """A music ratio from a randomly initialised Demucs decides nothing by default."""
    _write_project(tmp_path, {"wild": (10, 2)})
    clips_dir = tmp_path / "shards" / "clips" / "wild"
    rows = pq.read_table(clips_dir / "manifest.parquet").to_pylist()
    for r in rows:  # clip tars, so the sidecar can be written aligned with them
        with tarfile.open(clips_dir / r["shard"], "a") as tar:
            data = json.dumps({"key": r["key"]}).encode()
            info = tarfile.TarInfo(f"{r['key']}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = json.dumps({"status": "ok", "tiny": True}).encode()
    write_sidecars(tmp_path / "shards" / "features" / "vocals" / "wild", clips_dir,
                   {r["key"]: [("json", body)] for r in rows},
                   {r["key"]: {"status": "ok", "score_vocals_music_ratio": 0.99} for r in rows})
    report, decisions, _ = _run(tmp_path)
    assert report["tiny_scores_ignored"] == ["vocals"] and "music" not in report["dropped_by_reason"]

    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["select"]["tiny_scores"] = "apply"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    report, after, _ = _run(tmp_path)
    assert report["tiny_scores_ignored"] == [] and report["dropped_by_reason"]["music"] > 0


def test_a_global_speaker_id_lands_in_one_split_across_datasets(tmp_path):
    """A metadata table's global speaker ids (``speaker_scope: global``): one split per person in every
    dataset, and a person held out by a test-only dataset is never trained on elsewhere."""
    _write_project(tmp_path, {"tablea": (12, 2), "tableb": (12, 2), "scoped": (12, 2), "tableeval": (2, 1)})
    for name in ("tablea", "tableb", "tableeval"):
        path = tmp_path / "shards" / "clips" / name / "manifest.parquet"
        rows = pq.read_table(path).to_pylist()
        for r in rows:
            if name == "tableeval":  # the held-out people are spk05 and spk07 of the other tables
                r["speaker"] = {"spk00": "spk05", "spk01": "spk07"}[r["speaker"]]
            r["source_meta"] = json.dumps({"speaker": r["speaker"], "speaker_scope": "global"})
        pq.write_table(pa.Table.from_pylist(rows), path)
    report, decisions, _ = _run(tmp_path)

    kept = [d for d in decisions if not d["reason"]]
    split = {}
    for d in kept:
        if d["dataset"] != "scoped":
            split.setdefault(d["speaker"], set()).add(d["split"])
    assert all(len(s) == 1 for s in split.values()), split  # one split per global person, across tablea/tableb/tableeval
    assert split["spk05"] == {"test"} and split["spk07"] == {"test"}
    by_ds = {(d["dataset"], d["speaker"]): d["split"] for d in kept}
    others = [f"spk{i:02d}" for i in range(12) if f"spk{i:02d}" not in ("spk05", "spk07")]
    # the global split is the hash of (seed, speaker) in the global namespace, not of the dataset
    assert all(by_ds[("tablea", s)] == select.split_of(0, select.GLOBAL, s, 0.2, 0.2) for s in others if ("tablea", s) in by_ds)
    # dataset-scoped ids of the same names are independent: some land elsewhere
    assert any(by_ds.get(("scoped", s)) not in (None, by_ds.get(("tablea", s))) for s in others)
    # counted once per person, not once per dataset
    assert report["splits"]["test"]["speakers"] == len({(d["dataset"] if d["dataset"] == "scoped" else "*", d["speaker"])
                                                        for d in kept if d["split"] == "test"})
