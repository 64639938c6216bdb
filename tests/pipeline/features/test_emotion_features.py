"""Emotion extractors: transcript (Whisper), emotion_text (RoBERTa), emotion_speech (SER), valence_arousal (wav2vec2 VA)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import yaml

from core import weights
from pipeline import extract
from core.clip import Clip
from judges import speech_emotion, text_emotion
from pipeline.features import emotion_speech, emotion_text, transcript, valence_arousal
from pipeline.features._segments import frame_values, overlap_windows, segment_times
from core.shards import iter_samples
from core.weights import WeightsParams
from tests.pipeline.features.test_audio_features import make_clip_shards

SR = 16000
DURATIONS = [1.6, 3.0, 4.4]  # shorter than one 2 s window; 1.5 windows (hop-aligned end); 4.4 s (an extra last window)


# -- segmentation rule --------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds, expected", [
    (1.6, [(0.0, 1.6)]),                                   # shorter than a window: one segment, the whole clip
    (2.0, [(0.0, 2.0)]),                                   # exactly one window
    (2.5, [(0.0, 2.0), (0.5, 2.5)]),                       # the last window ends at the clip end
    (3.0, [(0.0, 2.0), (1.0, 3.0)]),                       # hop-aligned: no extra window
    (4.4, [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (2.4, 4.4)]),
    (5.0, [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0)]),
])
def test_overlap_windows_at_the_clip_edges(seconds, expected):
    bounds = overlap_windows(int(seconds * SR), SR, 2.0)
    assert [(t["start"], t["end"]) for t in segment_times(bounds, SR)] == expected
    lengths = {b - a for a, b in bounds}
    assert lengths == ({int(seconds * SR)} if seconds <= 2.0 else {2 * SR})  # equal windows: batched without padding
    covered = np.zeros(int(seconds * SR), bool)
    for a, b in bounds:
        covered[a:b] = True
    assert covered.all()


def test_frame_values_average_the_covering_segments():
    starts, ends = [0.0, 1.0, 2.0], [2.0, 3.0, 3.2]
    values = np.array([[1.0], [3.0], [5.0]])
    out = frame_values(starts, ends, values, frames=80, fps=25)
    assert out.shape == (80, 1) and out.dtype == np.float32
    assert out[0, 0] == 1.0 and out[25, 0] == 2.0 and out[50, 0] == 4.0 and out[79, 0] == 5.0
    # frames no segment covers: the fill value when given, else the nearest segment
    gap = frame_values([0.0], [1.0], np.array([[0.25, 0.75]]), frames=50, fps=25, fill=np.array([0.5, 0.5]))
    assert gap[:25].tolist() == [[0.25, 0.75]] * 25 and gap[25:].tolist() == [[0.5, 0.5]] * 25
    assert frame_values([0.0], [1.0], np.array([[7.0]]), frames=50, fps=25)[49, 0] == 7.0
    with pytest.raises(ValueError):
        frame_values([0.0, 1.0], [1.0, 2.0], np.ones((3, 2)), frames=10, fps=25)


# -- the stages -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("emotion")
    make_clip_shards(root, DURATIONS)
    params = {
        "runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards"},
        "weights": {"profile": "tiny", "dir": "weights", "backbone": False},
        "features": {"vocals": {"batch_size": 4}, "transcript": {"batch_size": 2}, "emotion_text": {},
                     "emotion_speech": {"window_s": 2.0, "segment_batch": 3}, "valence_arousal": {"window_s": 2.0}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _sidecar(project, feature):
    clips_dir, side = project / "shards" / "clips" / "toy", project / "shards" / "features" / feature / "toy"
    clip_samples, side_samples = list(iter_samples(clips_dir)), list(iter_samples(side))
    assert sorted(p.name for p in side.glob("*.tar")) == sorted(p.name for p in clips_dir.glob("*.tar"))
    assert [(s["__key__"], s["__shard__"]) for s in side_samples] == [(s["__key__"], s["__shard__"]) for s in clip_samples]
    frames = [json.loads(c["json"])["meta"]["encode"]["frames"] for c in clip_samples]
    return list(zip(frames, side_samples))


def _labels(project, spec):
    config = json.loads((project / "weights" / "tiny" / spec.name / "config.json").read_text())
    return [config["id2label"][str(i)] for i in range(len(config["id2label"]))]


def test_emotion_stages_share_the_transcript_write_aligned_sidecars_and_hit_the_cache(project):
    params_file = project / "params.yaml"
    # emotion_text first: it computes vocals and the transcript it reads through the cache ...
    text_report = extract.run("emotion_text", "toy", root=project, params_file=params_file)
    assert text_report["needs"] == ["vocals", "transcript"] and text_report["tiny_weights"]
    assert text_report["steps"]["transcript"]["computed"] == 3 and text_report["kept"] == 3
    # ... so the transcript stage runs Whisper on no clip (once per clip in all)
    tr_report = extract.run("transcript", "toy", root=project, params_file=params_file)
    assert tr_report["steps"]["transcript"]["computed"] == 0 and tr_report["steps"]["transcript"]["cached"] == 3
    for feature in ("emotion_speech", "valence_arousal"):
        report = extract.run(feature, "toy", root=project, params_file=params_file)
        assert report["kept"] == 3 and report["needs"] == ["vocals"] and report["steps"]["vocals"]["computed"] == 0

    transcripts = {}
    for frames, s in _sidecar(project, "transcript"):
        body = json.loads(s["json"])
        v = body["values"]
        assert body["tiny"] is True and v["tiny"] is True and body["audio"] == "vocals" and v["frames"] == frames
        assert v["language"] == "en" and isinstance(v["text"], str)
        for seg in v["segments"]:
            assert 0.0 <= seg["start"] <= seg["end"] <= frames / 25 and set(seg) == {"start", "end", "text"}
        transcripts[s["__key__"]] = v

    classes = _labels(project, emotion_text.WEIGHTS[0])
    assert classes == list(text_emotion.CLASSES)
    for frames, s in _sidecar(project, "emotion_text"):
        body = json.loads(s["json"])
        v = body["values"]
        assert body["tiny"] is True and v["classes"] == classes and v["frames"] == frames
        assert abs(sum(v["probs"]) - 1) < 1e-5 and len(v["probs"]) == len(classes)
        t = transcripts[s["__key__"]]
        assert [(g["start"], g["end"], g["text"]) for g in v["segments"]] == [(g["start"], g["end"], g["text"]) for g in t["segments"]]
        for g in v["segments"]:
            assert abs(sum(g["probs"]) - 1) < 1e-5
        per_frame = np.load(io.BytesIO(s["frames.npy"]))
        assert per_frame.dtype == np.float32 and per_frame.shape == (frames, len(classes))
        assert np.allclose(per_frame.sum(axis=1), 1, atol=1e-5)

    ser_classes = _labels(project, emotion_speech.WEIGHTS[0])
    assert ser_classes == list(speech_emotion.CLASSES)
    for frames, s in _sidecar(project, "emotion_speech"):
        body = json.loads(s["json"])
        v = body["values"]
        expected = segment_times(overlap_windows(frames * 640, SR, 2.0), SR)
        assert body["tiny"] is True and v["classes"] == ser_classes and v["segments"] == expected
        assert v["window_s"] == 2.0 and v["hop_s"] == 1.0 and v["frames"] == frames
        probs, embed, per_frame = (np.load(io.BytesIO(s[m])) for m in ("probs.npy", "embed.npy", "frames.npy"))
        assert probs.dtype == np.float32 and probs.shape == (len(expected), len(ser_classes))
        assert np.allclose(probs.sum(axis=1), 1, atol=1e-5) and abs(sum(v["probs"]) - 1) < 1e-5
        assert embed.dtype == np.float16 and embed.shape == (len(expected), 16)
        assert per_frame.shape == (frames, len(ser_classes)) and np.allclose(per_frame.sum(axis=1), 1, atol=1e-5)

    for frames, s in _sidecar(project, "valence_arousal"):
        body = json.loads(s["json"])
        v = body["values"]
        expected = segment_times(overlap_windows(frames * 640, SR, 2.0), SR)
        assert body["tiny"] is True and v["dims"] == ["valence", "arousal", "dominance"] and v["segments"] == expected
        seg, per_frame = np.load(io.BytesIO(s["segments.npy"])), np.load(io.BytesIO(s["frames.npy"]))
        assert seg.dtype == per_frame.dtype == np.float32 and seg.shape == (len(expected), 3) and per_frame.shape == (frames, 3)
        assert np.allclose(per_frame[0], seg[0], atol=1e-6)  # the first frame is covered by the first window only
    counts = [len(json.loads(s["json"])["values"]["segments"]) for _, s in _sidecar(project, "valence_arousal")]
    assert counts == [1, 2, 4]  # 1.6 s, 3.0 s, 4.4 s

    for feature in ("emotion_text", "emotion_speech", "valence_arousal", "transcript"):
        again = extract.run(feature, "toy", root=project, params_file=params_file)
        assert all(step["computed"] == 0 for step in again["steps"].values()), (feature, again["steps"])


def test_emotion_text_of_an_empty_transcript_is_the_classifier_on_the_empty_string(project, tmp_path):
    wp = WeightsParams(profile="tiny", dir=str(project / "weights"))
    ext = emotion_text.Extractor(emotion_text.Params(), wp, features=[])
    ext.setup()
    empty = {"text": "", "segments": [], "frames": 30}
    spoken = {"text": "I am so happy", "frames": 30, "segments": [{"start": 0.2, "end": 0.6, "text": "I am so happy"}]}
    clips = [Clip(key=f"k{i}", dataset="d", source="s", source_rel="s", source_hash="h", meta={"transcript": t})
             for i, t in enumerate([empty, spoken])]
    outs = [tmp_path / "a", tmp_path / "b"]
    for o in outs:
        o.mkdir()
    a, b = ext.process(clips, outs)
    va = a.meta["emotion_text"]
    assert va["empty"] is True and va["segments"] == [] and np.allclose(va["probs"], ext.classify([""])[0], atol=1e-6)
    assert np.allclose(np.load(outs[0] / "frames.npy"), np.array(va["probs"])[None], atol=1e-6)
    vb = b.meta["emotion_text"]
    frames_b = np.load(outs[1] / "frames.npy")
    assert vb["empty"] is False and frames_b.shape == (30, len(text_emotion.CLASSES))
    assert np.allclose(frames_b[5], vb["segments"][0]["probs"], atol=1e-6) and np.allclose(frames_b[0], vb["probs"], atol=1e-6)
    assert ext.needs == ("transcript",)


@pytest.mark.parametrize("module", [transcript, emotion_text, emotion_speech, valence_arousal])
def test_paper_folders_are_verified_and_name_the_source(module, tmp_path):
    (spec,) = module.WEIGHTS
    assert spec.repo_id and spec.licence
    with pytest.raises(weights.WeightsError, match=f"{spec.repo_id}.*expected files: {', '.join(spec.files)}"):
        weights.ensure(spec, WeightsParams(profile="paper", dir=str(tmp_path)))
    assert valence_arousal.WEIGHTS[0].licence == "CC-BY-NC-SA-4.0"
