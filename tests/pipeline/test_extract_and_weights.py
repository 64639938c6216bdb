"""Extractor contract, weights profiles and feature sidecars, proven with a tiny HF model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from core import weights
from core.cli import StageFailed
from pipeline import extract, ingest
from pipeline import weights as weights_stage
from core.shards import iter_samples, read_manifest, read_rejects
from core.weights import ModelSpec, WeightsError, WeightsParams
from tests.conftest import make_media
from tests.pipeline import fake_feature


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    for i, fps in enumerate(["24", "30", "25"]):
        make_media(root / "raw" / f"v{i}.mp4", seconds=3.5, fps=fps)
    params = {
        "runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards", "max_bytes": 20_000},
        "weights": {"profile": "tiny", "dir": "weights"},
        "datasets": {"toy": {"adapter": "folder", "raw_dir": "raw"}},
        "steps": {"face": {"enabled": False}, "encode": {"preset": "ultrafast"}},  # test patterns: no face to crop
        "features": {"fake": {"module": "tests.pipeline.fake_feature", "batch_size": 2}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    ingest.run("toy", root=root, params_file=root / "params.yaml")
    return root


def test_tiny_hf_model_is_generated_and_reloads_offline(tmp_path):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    from transformers import Wav2Vec2Model

    wp = WeightsParams(profile="tiny", dir=str(tmp_path / "w"))
    path = weights.ensure(fake_feature.WEIGHTS[0], wp)
    assert weights.is_tiny(path) and (path / "model.safetensors").is_file()
    model = Wav2Vec2Model.from_pretrained(path)
    assert model.config.hidden_size == 16
    fp = weights.fingerprint(path)
    # Same seed, same bytes: a regenerated stand-in has the same fingerprint (cache keys stay valid).
    other = weights.ensure(fake_feature.WEIGHTS[0], WeightsParams(profile="tiny", dir=str(tmp_path / "w2")))
    assert weights.fingerprint(other) == fp


def test_missing_or_incomplete_folders_name_the_files_and_the_fix(tmp_path):
    spec = fake_feature.WEIGHTS[0]
    with pytest.raises(WeightsError, match=r"fake_wav2vec2' does not exist; copy the real model \(example/wav2vec2@0+\)"):
        weights.ensure(spec, WeightsParams(profile="paper", dir=str(tmp_path)))
    folder = tmp_path / "paper" / "fake_wav2vec2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="is incomplete: missing model.safetensors"):
        weights.ensure(spec, WeightsParams(profile="paper", dir=str(tmp_path)))
    tiny = weights.ensure(spec, WeightsParams(profile="tiny", dir=str(tmp_path)))
    (tiny / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="missing model.safetensors; run `python -m pipeline.weights build`"):
        weights.ensure(spec, WeightsParams(profile="tiny", dir=str(tmp_path)))


def test_a_failing_generator_leaves_no_folder(tmp_path):
    def broken(folder, seed):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        weights.ensure(ModelSpec("b", files=("config.json",), make_tiny=broken), WeightsParams(dir=str(tmp_path)))
    assert not any((tmp_path / "tiny").iterdir())


def test_weights_build_writes_a_manifest_of_configured_models(project):
    data = yaml.safe_load((project / "params.yaml").read_text())
    manifest = weights_stage.build(data, WeightsParams(profile="tiny", dir="weights"), project)
    import judges

    backbone, entry, *judge_entries = manifest["models"]
    # every judge too (weights.judges, on by default): the losses and metrics need them, tiny and recorded with a source
    assert sorted(e["name"] for e in judge_entries) == sorted(s.name for s in judges.specs() if s.name != backbone["name"])
    assert all(e["tiny"] and e["licence"] and (e["repo_id"] or e.get("url")) for e in judge_entries)
    assert backbone["name"] == "stable-diffusion-v1-5" and backbone["tiny"]
    assert entry["name"] == "fake_wav2vec2" and entry["tiny"] and len(entry["sha256"]) == 64
    from core.sd15 import verify_sd15_folder

    verify_sd15_folder(project / backbone["path"])  # the network's own loader accepts the generated folder
    assert json.loads((project / "weights" / "tiny" / "manifest.json").read_text()) == manifest


def test_extract_writes_aligned_sidecars_labelled_tiny_and_caches(project):
    report = extract.run("fake", "toy", root=project, params_file=project / "params.yaml")
    clips_dir, side = project / "shards" / "clips" / "toy", project / "shards" / "features" / "fake" / "toy"
    assert sorted(p.name for p in side.glob("*.tar")) == sorted(p.name for p in clips_dir.glob("*.tar"))
    clip_samples, side_samples = list(iter_samples(clips_dir)), list(iter_samples(side))
    assert [(s["__key__"], s["__shard__"]) for s in side_samples] == [(s["__key__"], s["__shard__"]) for s in clip_samples]
    for s in side_samples:
        body = json.loads(s["json"])
        assert body["status"] == "ok" and body["tiny"] is True and body["feature"] == "fake"
        assert body["values"]["sample_rate"] == 16000 and set(body["weights"]) == {"fake_wav2vec2"}
        emb = np.load(__import__("io").BytesIO(s["npy"]))
        assert emb.shape == (16,) and emb.dtype == np.float16
    assert read_manifest(side).column("key").to_pylist() == read_manifest(clips_dir).column("key").to_pylist()
    assert report["tiny_weights"] is True and report["kept"] == 3
    again = extract.run("fake", "toy", root=project, params_file=project / "params.yaml")
    assert again["steps"]["fake"]["cached"] == 3 and again["steps"]["fake"]["computed"] == 0


def test_extract_rejects_stay_aligned(project, tmp_path):
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["features"]["fake"]["fail_key_contains"] = "v1"
    params = project / "params_fail.yaml"
    params.write_text(yaml.safe_dump(data))
    report = extract.run("fake", "toy", root=project, params_file=params)
    side = project / "shards" / "features" / "fake" / "toy"
    (row,) = read_rejects(side).to_pylist()
    assert row["reason"] == "error:ValueError" and "v1" in row["key"]
    bodies = {s["__key__"]: json.loads(s["json"]) for s in iter_samples(side)}
    assert len(bodies) == 3 and bodies[row["key"]]["status"] == "dropped"
    assert report["dropped_by_reason"] == {"error:ValueError": 1}
    assert report["steps"]["fake"]["computed"] == 3  # a params change is a new cache key for every clip


def test_extract_without_clip_shards_is_a_clear_error(project):
    with pytest.raises(FileNotFoundError, match="run the stage that writes it first"):
        extract.run("fake", "nope", root=project, params_file=project / "params.yaml")


def test_configured_specs_follow_a_features_params(tmp_path):
    """The weights stage verifies the caption model the params name, not the default one."""
    from pipeline.weights import configured_specs

    default = {s.name for s in configured_specs({"weights": {"backbone": False}, "features": {"caption": {}}})}
    custom = {s.name for s in configured_specs({"weights": {"backbone": False}, "features": {"caption": {"model": "my-vlm"}}})}
    assert "my-vlm" in custom and "my-vlm" not in default and custom - {"my-vlm"} == default - (default - custom)


def test_a_stage_in_which_every_clip_fails_exits_non_zero(project, monkeypatch):
    """runner.max_error_fraction: all clips error:ValueError -> exit status 3 naming the error and the rejects
    file; the sidecar is still written (every clip a reason-coded reject), so nothing disappears."""
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["features"]["fake"]["fail_key_contains"] = "__"  # every key
    params = project / "params_all_fail.yaml"
    params.write_text(yaml.safe_dump(data))
    with pytest.raises(StageFailed, match=r"3 of 3 items failed with an error .* error:ValueError \(3x\).*rejects.parquet"):
        extract.run("fake", "toy", root=project, params_file=params)
    monkeypatch.chdir(project)
    assert extract.main(["fake", "toy", "--params", str(params)]) == 3
    rejects = read_rejects(project / "shards/features/fake/toy").to_pylist()
    assert len(rejects) == 3 and {r["reason"] for r in rejects} == {"error:ValueError"}
    data["runner"]["max_error_fraction"] = 1.0
    params.write_text(yaml.safe_dump(data))
    assert extract.main(["fake", "toy", "--params", str(params)]) == 0
    data["runner"]["max_error_fraction"] = 2.0
    params.write_text(yaml.safe_dump(data))
    assert extract.main(["fake", "toy", "--params", str(params)]) == 2  # a params error, named


def test_a_video_only_change_keeps_audio_features_cached(project):
    """Issue 15 item 1: ``steps.encode.crf`` changes every mp4 but no wav, so an audio feature (its key:
    the wav's hash, its params and weights) computes nothing again and writes the same values. Last in
    the module: it re-ingests the shared project."""
    first = extract.run("fake", "toy", root=project, params_file=project / "params.yaml")
    side = project / "shards" / "features" / "fake" / "toy"
    before = {s["__key__"]: (json.loads(s["json"])["values"], s["npy"]) for s in iter_samples(side)}
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["steps"]["encode"]["crf"] = 30
    params = project / "params_crf.yaml"
    params.write_text(yaml.safe_dump(data))
    mp4s = {s["__key__"]: (s["mp4"], s["wav"]) for s in iter_samples(project / "shards" / "clips" / "toy")}
    report = ingest.run("toy", root=project, params_file=params)
    assert report["steps"]["encode"]["computed"] == 3 and report["steps"]["probe"]["computed"] == 0
    after_clips = {s["__key__"]: (s["mp4"], s["wav"]) for s in iter_samples(project / "shards" / "clips" / "toy")}
    assert all(after_clips[k][0] != mp4s[k][0] and after_clips[k][1] == mp4s[k][1] for k in mp4s)  # new video, same audio
    again = extract.run("fake", "toy", root=project, params_file=params)
    assert first["kept"] == again["kept"] == 3
    assert again["steps"]["fake"]["computed"] == 0 and again["steps"]["fake"]["cached"] == 3
    assert {s["__key__"]: (json.loads(s["json"])["values"], s["npy"]) for s in iter_samples(side)} == before
