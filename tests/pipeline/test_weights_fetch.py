"""`python -m pipeline.weights fetch`: hub-hosted weights at pinned commits, only the files a folder needs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core import params as params_mod
from core.weights import WeightsParams
from pipeline import weights as weights_stage

REPO = Path(__file__).resolve().parents[2]
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def test_every_hub_model_of_the_configuration_is_pinned_to_a_commit():
    from pipeline.features import caption

    specs = weights_stage.configured_specs(params_mod.read_yaml(REPO / "params.yaml"))
    hub = {s.name: s for s in specs if s.repo_id}
    # the models the paper profile needs from the hub: SD 1.5, the audio/text features' and the judges'
    assert {"stable-diffusion-v1-5", "clip-vit-large-patch14", "wav2vec2-base-960h", "whisper-large-v3",
            "hubert-large-superb-er", "emotion-english-distilroberta-base",
            "wav2vec2-large-robust-12-ft-emotion-msp-dim"} <= set(hub)
    # every one at a full commit id, the captioning folder (which follows features.caption.model) included
    unpinned = {name for name, s in hub.items() if not COMMIT.match(s.revision)}
    assert unpinned == set(), unpinned
    assert hub[caption.Params().model].fetch_patterns == caption.VLM_FETCH
    assert hub[caption.Params().model].revision == caption.HUB_REVISIONS[caption.Params().model]
    # off-hub weights are placed by hand from their address, and keep their sha256 where one is published
    for s in specs:
        if not s.repo_id and not s.bundled:
            assert s.url or s.revision, s.name


def test_fetch_asks_for_the_pinned_revision_and_only_the_listed_files(tmp_path, monkeypatch):
    import huggingface_hub

    from core.sd15 import weights_spec

    calls = []

    def fake_snapshot_download(repo_id, *, revision, allow_patterns, local_dir):
        calls.append((repo_id, revision, tuple(allow_patterns)))
        for name in allow_patterns:  # the SD 1.5 folder's files are plain names, not globs
            (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(local_dir) / name).write_text("{}")
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    data = {"weights": {"profile": "paper", "backbone": True, "judges": False}, "features": {}}
    wp = WeightsParams(profile="paper", dir=str(tmp_path / "w"), judges=False)
    assert weights_stage.fetch(data, wp, root=tmp_path) == []
    spec = weights_spec()
    assert calls == [(spec.repo_id, "451f4fe16113bff5a5d2269ed5ad43b0592e9a14", spec.files)]
    manifest = json.loads((tmp_path / "w" / "paper" / "manifest.json").read_text())
    [entry] = manifest["models"]
    assert (entry["repo_id"], entry["revision"], entry["tiny"]) == (spec.repo_id, spec.revision, False)
    # fetch is for the paper profile only
    with pytest.raises(FileNotFoundError, match="weights.profile: paper"):
        weights_stage.fetch(data, WeightsParams(profile="tiny", dir=str(tmp_path / "w")), root=tmp_path)


def test_fetch_patterns_widen_a_folder_whose_checked_files_are_not_all_it_loads():
    from pipeline.features import caption

    spec = caption.vlm_spec(caption.Params())
    args = weights_stage.fetch_arguments(spec)
    assert args == {"revision": "08647831752d66cc51831ff4f2a476de6ba2af9c", "allow_patterns": list(caption.VLM_FETCH)}
    assert "*.safetensors" in args["allow_patterns"]  # the (sharded) weights, which `files` does not list


def test_the_paper_captioning_model_is_pinned_and_an_unknown_one_follows_main():
    from pipeline.features import caption

    paper = caption.vlm_spec(caption.Params(backend="videollama2", model="VideoLLaMA2-7B"))
    assert (paper.repo_id, paper.revision) == ("DAMO-NLP-SG/VideoLLaMA2-7B", "b39f289")
    other = caption.vlm_spec(caption.Params(model="llava-interleave-qwen-7b-hf"))
    assert (other.repo_id, other.revision) == ("llava-hf/llava-interleave-qwen-7b-hf", "")
    assert weights_stage.fetch_arguments(other)["revision"] is None  # fetch warns and takes main


class _Commit:
    def __init__(self, commit_id: str):
        self.commit_id = commit_id


def test_a_short_commit_id_resolves_to_the_one_full_commit_it_starts():
    history = [_Commit("b39f289" + "1" * 33), _Commit("3d2a74d6a1d92e44acff5266a617eb7204a1af51"), _Commit("b304476" + "2" * 33)]
    asked = []

    def list_commits(repo_id):
        asked.append(repo_id)
        return history

    resolve = weights_stage.resolve_revision
    assert resolve("org/m", "b39f289", list_commits) == "b39f289" + "1" * 33
    assert asked == ["org/m"]
    # full ids, branches and tags go to the hub as they are, without reading the history
    for given in ("3d2a74d6a1d92e44acff5266a617eb7204a1af51", "main", "v1.0", "refs/pr/1"):
        assert resolve("org/m", given, list_commits) == given
    assert resolve("org/m", "", list_commits) is None
    assert asked == ["org/m"]
    with pytest.raises(FileNotFoundError, match=r"org/m: no commit of its history starts with the pinned 1234567; pin a full"):
        resolve("org/m", "1234567", list_commits)
    with pytest.raises(FileNotFoundError, match=r"2 commits .* start"):
        resolve("org/m", "b39f289", lambda repo_id: history + [_Commit("b39f2890" + "3" * 32)])
