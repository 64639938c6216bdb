"""Caption extractor: frame sampling, both backends (VideoLLaMA2 against a fake of its API), embeddings, cache."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import types

import numpy as np
import pytest
import yaml

from core import weights
from pipeline import extract
from core.clip import Clip, Drop
from pipeline.features import caption
from pipeline.features.caption_backends import CaptionBackendError, GenerationSettings, make_backend
from core.shards import iter_samples
from core.weights import WeightsError, WeightsParams
from tests.pipeline.features.test_audio_features import _aligned, make_clip_shards

PROMPT = "Describe the person's appearance and actions."


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("caption")
    make_clip_shards(root, [3.2, 4.0, 0.2])  # the 0.2 s clip has fewer frames (5) than are sampled (6)
    params = {
        "runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards"},
        "weights": {"profile": "tiny", "dir": "weights", "backbone": False},
        "features": {"caption": {"frames": 6, "prompt": PROMPT, "max_new_tokens": 6, "batch_size": 3, "generate_batch": 2}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def test_caption_sidecars_hold_caption_settings_embeddings_and_hit_the_cache(project):
    params_file = project / "params.yaml"
    report = extract.run("caption", "toy", root=project, params_file=params_file)
    assert report["steps"]["caption"]["computed"] == 3 and report["kept"] == 3 and report["tiny_weights"]
    clip_samples, side, _ = _aligned(project, "caption")
    for c, s in zip(clip_samples, side):
        body = json.loads(s["json"])
        values = body["values"]
        frames = json.loads(c["json"])["meta"]["encode"]["frames"]
        assert body["status"] == "ok" and body["tiny"] is True and values["tiny"] is True
        assert isinstance(values["caption"], str) and values["prompt"] == PROMPT
        assert values["generation"] == {"max_new_tokens": 6, "do_sample": False, "num_beams": 1}
        assert values["model"]["backend"] == "transformers" and values["model"]["class"] == "LlavaForConditionalGeneration"
        assert len(values["model"]["sha256"]) == 16
        assert values["frame_times"] == [round(i / 25, 4) for i in caption.sample_indices(frames, 6)]
        assert body["params"]["prompt"] == PROMPT and set(body["weights"]) >= {"llava-interleave-qwen-0.5b-hf", "stable-diffusion-v1-5", "all-MiniLM-L6-v2"}
        states = np.load(io.BytesIO(s["text_states.npy"]))
        sentence = np.load(io.BytesIO(s["sentence.npy"]))
        assert states.dtype == np.float16 and states.shape == (77, 32)  # tiny SD 1.5 text encoder: D = 32
        assert sentence.dtype == np.float32 and sentence.shape == (384,)  # the real all-MiniLM-L6-v2
        assert abs(float(np.linalg.norm(sentence)) - 1.0) < 1e-4
    assert [len(json.loads(s["json"])["values"]["frame_times"]) for s in side] == [6, 6, 5]

    again = extract.run("caption", "toy", root=project, params_file=params_file)
    assert again["steps"]["caption"] == {**again["steps"]["caption"], "cached": 3, "computed": 0}
    assert [s["json"] for s in iter_samples(project / "shards" / "features" / "caption" / "toy")] == [s["json"] for s in side]


def test_sentence_embedding_is_real(project):
    ext = caption.Extractor(caption.Params(), WeightsParams(profile="tiny", dir=str(project / "weights")))
    ext.setup()
    _, sentences = ext.embed(["a woman with earrings turns her head", "a woman wearing earrings turning her head",
                              "stock prices fell sharply on tuesday"])
    assert float(sentences[0] @ sentences[1]) > 0.8 > 0.3 > float(sentences[0] @ sentences[2])


def test_uniform_sampling_picks_bin_centres_and_decodes_those_frames(tmp_path):
    assert caption.sample_indices(75, 8) == [4, 14, 23, 32, 42, 51, 60, 70]
    assert caption.sample_indices(100, 4) == [12, 37, 62, 87]
    assert caption.sample_indices(3, 8) == [0, 1, 2] and caption.sample_indices(0, 8) == []
    video = tmp_path / "ramp.mp4"  # every frame a different grey level
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "color=c=black:s=32x24:r=25:d=2",
                    "-vf", "geq=lum='N*4':cb=128:cr=128", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(video)], check=True)
    everything = caption.decode_frames(video, list(range(50)))
    picked = caption.decode_frames(video, [3, 20, 41])
    assert everything.shape == (50, 24, 32, 3) and picked.shape == (3, 24, 32, 3)
    assert np.array_equal(picked, everything[[3, 20, 41]])
    assert caption.decode_frames(video, [3], side=16).shape == (1, 16, 16, 3)
    with pytest.raises(RuntimeError, match="decoded 0 of the 1 sampled frames"):
        caption.decode_frames(video, [500])


def _clip(tmp_path, i, seconds):
    from tests.conftest import make_media

    frames = int(round(seconds * 25))
    mp4 = make_media(tmp_path / f"c{i}.mp4", seconds=frames / 25, fps="25", audio=False)
    return Clip(key=f"t__c{i}__0", dataset="t", source="c.mp4", source_rel="c.mp4", source_hash=str(i), duration=frames / 25,
                meta={"encode": {"frames": frames, "fps": 25}}, files={"mp4": str(mp4)})


def test_transformers_backend_batches_with_left_padding(project, tmp_path):
    folder = weights.ensure(caption.vlm_spec(caption.Params()), WeightsParams(profile="tiny", dir=str(project / "weights")))
    backend = make_backend("transformers")
    backend.setup(folder)
    assert backend.mode == "images" and backend.processor.tokenizer.padding_side == "left"
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (8, 40, 40, 3), np.uint8), rng.integers(0, 255, (3, 40, 40, 3), np.uint8)
    settings = GenerationSettings(max_new_tokens=5)
    together = backend.generate([a, b], PROMPT, settings)
    assert together == backend.generate([a], PROMPT, settings) + backend.generate([b], PROMPT, settings)
    assert 2 <= backend.tokens // 2 <= 10  # 2 clips, at most 5 tokens each, counted three times over two calls
    video = make_backend("transformers", frames_as="video")
    with pytest.raises(CaptionBackendError, match="has no video processor"):
        video.setup(folder)


# -- VideoLLaMA2 through a fake of its package API -------------------------------------------------
class _FakeTokenizer:
    def __call__(self, text, add_special_tokens=True):
        return types.SimpleNamespace(input_ids=text.split())


def _fake_videollama2(calls):
    """``videollama2`` as its README uses it: model_init(path) -> (model, processors, tokenizer); mm_infer(...)."""
    mod = types.ModuleType("videollama2")

    def model_init(model_path=None, **kwargs):
        calls.append(("model_init", model_path))
        model = types.SimpleNamespace(config=types.SimpleNamespace(model_type="videollama2"))
        return model, {"video": lambda frames: {"video_tensor": frames.shape}}, _FakeTokenizer()

    def mm_infer(image_or_video, instruct, model, tokenizer, modal="video", **kwargs):
        calls.append(("mm_infer", image_or_video, instruct, modal, kwargs))
        return f" a person with {image_or_video['video_tensor'][0]} frames nods "

    mod.model_init, mod.mm_infer = model_init, mm_infer
    return mod


def test_videollama2_backend_drives_the_package_api(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setitem(sys.modules, "videollama2", _fake_videollama2(calls))
    from core.tiny_sd import write_tiny_sd15

    wdir = tmp_path / "w"
    vl = wdir / "paper" / "VideoLLaMA2-7B"
    vl.mkdir(parents=True)
    (vl / "config.json").write_text("{}")
    (vl / "tokenizer_config.json").write_text("{}")
    write_tiny_sd15(wdir / "paper" / "stable-diffusion-v1-5")
    params = caption.Params(backend="videollama2", model="VideoLLaMA2-7B", frames=4, prompt=PROMPT, max_new_tokens=7, generate_batch=2)
    ext = caption.Extractor(params, WeightsParams(profile="paper", dir=str(wdir)))
    assert ext.tiny is False
    ext.setup()
    assert calls == [("model_init", str(vl.resolve()))]
    clips = [_clip(tmp_path, 0, 3.0), _clip(tmp_path, 1, 0.12), _clip(tmp_path, 2, 2.0)]
    clips.append(dataclasses.replace(clips[0], key="t__nomp4__0", files={}))
    outs = [tmp_path / f"o{i}" for i in range(len(clips))]
    for o in outs:
        o.mkdir()
    results = ext.process(clips, outs)
    infer = [c for c in calls if c[0] == "mm_infer"]
    assert [c[1]["video_tensor"][0] for c in infer] == [4, 3, 4]  # frames per clip (the 3-frame clip has only 3)
    assert all(c[2] == PROMPT and c[3] == "video" and c[4] == {"do_sample": False, "max_new_tokens": 7} for c in infer)
    assert [r.meta["caption"]["caption"] for r in results[:3]] == ["a person with 4 frames nods", "a person with 3 frames nods",
                                                                    "a person with 4 frames nods"]
    assert results[0].meta["caption"]["model"]["backend"] == "videollama2" and results[0].meta["caption"]["tiny"] is False
    assert np.load(results[0].files["caption.text_states.npy"]).shape == (77, 32)
    assert isinstance(results[3], Drop) and results[3].reason == "no_video"
    assert ext.backend.tokens == 3 * 7  # 6 words + the end token per caption


def test_videollama2_backend_without_the_package_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "videollama2", None)  # import fails as if it were not installed
    with pytest.raises(CaptionBackendError, match=r"pip install git\+https://github.com/DAMO-NLP-SG/VideoLLaMA2.*backend: transformers"):
        make_backend("videollama2").setup(tmp_path)


@pytest.mark.parametrize("backend,model", [("transformers", "llava-interleave-qwen-0.5b-hf"), ("videollama2", "VideoLLaMA2-7B")])
def test_missing_model_folder_names_the_expected_files(backend, model, tmp_path):
    params = caption.Params(backend=backend, model=model)
    with pytest.raises(WeightsError, match=f"'{model}' does not exist;.*expected files: config.json, tokenizer_config.json"):
        caption.Extractor(params, WeightsParams(profile="paper", dir=str(tmp_path)))
    if backend == "videollama2":  # no tiny stand-in of VideoLLaMA2: the error says to use real weights
        with pytest.raises(WeightsError, match="no tiny stand-in generator"):
            caption.Extractor(params, WeightsParams(profile="tiny", dir=str(tmp_path)))
