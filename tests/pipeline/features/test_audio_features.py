"""Audio extractors: vocals (Demucs), speech (Silero VAD, real weights), audio_embed (wav2vec2)."""

from __future__ import annotations

import io
import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
import yaml

from core import weights
from pipeline import extract, report
from core.clip import Clip
from pipeline.features import audio_embed, speech, vocals
from core.shards import ShardParams, iter_samples, read_manifest, write_clip_shards
from core.weights import WeightsError, WeightsParams
from tests.conftest import make_media


def make_clip_shards(root, durations, dataset="toy"):
    """Clip shards as ingest writes them (25 fps mp4 + 16 kHz mono wav of exactly frames * 640 samples)."""
    clips = []
    for i, seconds in enumerate(durations):
        frames = int(round(seconds * 25))
        mp4 = make_media(root / "media" / f"v{i}.mp4", seconds=frames / 25, fps="25", audio=False)
        wav = root / "media" / f"v{i}.wav"
        expr = "0.3*sin(2*PI*220*t)*gt(mod(t\\,2)\\,0.5)+0.05*sin(2*PI*55*t)"
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"aevalsrc={expr}:s=16000:c=mono:d={frames / 25}",
                        "-c:a", "pcm_s16le", str(wav)], check=True)
        meta = {"encode": {"frames": frames, "fps": 25, "sample_rate": 16000, "width": 96, "height": 96}}
        clips.append(Clip(key=f"{dataset}__v{i}__0000000", dataset=dataset, source=f"v{i}.mp4", source_rel=f"v{i}.mp4",
                          source_hash=f"{i:064d}", start=0.0, duration=frames / 25, meta=meta,
                          files={"mp4": str(mp4), "wav": str(wav)}))
    write_clip_shards(root / "shards" / "clips" / dataset, clips, [], ShardParams(max_count=2))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    make_clip_shards(root, [3.2, 4.0, 9.0])  # the 9 s clip is longer than one Demucs segment
    params = {
        "runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards"},
        "weights": {"profile": "tiny", "dir": "weights", "backbone": False}, "report": {"frames_per_dataset": 1},
        "features": {"vocals": {"batch_size": 4}, "speech": {}, "audio_embed": {"batch_size": 2}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _aligned(project, feature):
    clips_dir, side = project / "shards" / "clips" / "toy", project / "shards" / "features" / feature / "toy"
    assert sorted(p.name for p in side.glob("*.tar")) == sorted(p.name for p in clips_dir.glob("*.tar"))
    clip_samples, side_samples = list(iter_samples(clips_dir)), list(iter_samples(side))
    assert [(s["__key__"], s["__shard__"]) for s in side_samples] == [(s["__key__"], s["__shard__"]) for s in clip_samples]
    return clip_samples, side_samples, read_manifest(side)


def test_audio_features_write_aligned_sidecars_scores_and_hit_the_cache(project):
    params_file = project / "params.yaml"
    # audio_embed first: it computes the vocals it needs through the cache ...
    emb_report = extract.run("audio_embed", "toy", root=project, params_file=params_file)
    assert emb_report["needs"] == ["vocals"] and emb_report["steps"]["vocals"]["computed"] == 3
    # ... so the vocals stage then only reads them back.
    voc_report = extract.run("vocals", "toy", root=project, params_file=params_file)
    assert voc_report["steps"]["vocals"] == {**voc_report["steps"]["vocals"], "cached": 3, "computed": 0}
    sp_report = extract.run("speech", "toy", root=project, params_file=params_file)
    assert voc_report["tiny_weights"] and emb_report["tiny_weights"] and not sp_report["tiny_weights"]

    clip_samples, side, table = _aligned(project, "vocals")
    assert {"score_vocals_music_ratio", "score_vocals_vocals_dbfs"} <= set(table.column_names)
    for c, s in zip(clip_samples, side):
        body = json.loads(s["json"])
        assert body["status"] == "ok" and body["tiny"] is True
        assert 0.0 <= body["values"]["music_ratio"] <= 1.0
        wav, sr = sf.read(io.BytesIO(s["wav"]))
        orig, osr = sf.read(io.BytesIO(c["wav"]))
        assert sr == osr == 16000 and wav.ndim == 1 and len(wav) == len(orig)
    packed = [json.loads(s["json"])["values"]["packed"] for s in side]
    assert packed.count(True) == 2 and packed.count(False) == 1  # the 9 s clip runs alone

    clip_samples, side, table = _aligned(project, "speech")
    assert "score_speech_ratio" in table.column_names
    for s in side:
        body = json.loads(s["json"])
        assert body["audio"] == "original" and body["tiny"] is False and 0.0 <= body["values"]["ratio"] <= 1.0

    clip_samples, side, table = _aligned(project, "audio_embed")
    for c, s in zip(clip_samples, side):
        body = json.loads(s["json"])
        assert body["audio"] == "vocals" and body["values"]["audio"] == "vocals"
        emb = np.load(io.BytesIO(s["npy"]))
        frames = json.loads(c["json"])["frames"]
        assert emb.dtype == np.float16 and emb.shape == (frames, 2, 32)  # one vector per video frame, every layer

    again = extract.run("audio_embed", "toy", root=project, params_file=params_file)
    assert again["steps"]["audio_embed"]["cached"] == 3 and again["steps"]["audio_embed"]["computed"] == 0
    assert again["steps"]["vocals"]["computed"] == 0
    assert json.loads((project / "reports" / "extract" / "speech-toy.json").read_text())["kept"] == 3

    report.run(project, params_file)
    md = (project / "reports" / "data.md").read_text()
    assert "- vocals: ok: 3 (mean vocals_music_ratio" in md and "- speech: ok: 3" in md and "- audio_embed: ok: 3" in md


def test_audio_embed_reads_the_original_track_when_vocals_is_disabled(project, tmp_path):
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["features"]["vocals"]["enabled"] = False
    params_file = project / "params_novocals.yaml"
    params_file.write_text(yaml.safe_dump(data))
    report = extract.run("audio_embed", "toy", root=project, params_file=params_file)
    assert report["needs"] == [] and "vocals" not in report["steps"]
    assert report["steps"]["audio_embed"]["computed"] == 3  # another input: new cache keys
    side = list(iter_samples(project / "shards" / "features" / "audio_embed" / "toy"))
    assert {json.loads(s["json"])["audio"] for s in side} == {"original"}
    # the disabled feature's own stage writes an aligned sidecar that says so, and runs no model
    off = extract.run("vocals", "toy", root=project, params_file=params_file)
    assert off["disabled"] and off["kept"] == 0
    _, side, table = _aligned(project, "vocals")
    assert {json.loads(s["json"])["status"] for s in side} == {"disabled"}


def test_packing_puts_short_clips_in_shared_windows():
    assert vocals.pack_windows([300, 100, 200, 50], window=400, gap=10) == [[0, 3], [1, 2]]
    assert vocals.pack_windows([400, 400], window=400, gap=0) == [[0], [1]]
    assert audio_embed.interpolate_frames(np.arange(5.0)[:, None], 9)[:, 0].tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4]


@pytest.mark.parametrize("module", [vocals, audio_embed])
def test_missing_or_incomplete_weights_name_the_expected_files(module, tmp_path):
    (spec,) = module.WEIGHTS
    with pytest.raises(WeightsError, match=f"'{spec.name}' does not exist;.*expected files: {', '.join(spec.files)}"):
        weights.ensure(spec, WeightsParams(profile="paper", dir=str(tmp_path)))
    folder = tmp_path / "paper" / spec.name
    folder.mkdir(parents=True)
    (folder / spec.files[0]).write_text("{}")
    with pytest.raises(WeightsError, match=f"is incomplete: missing {', '.join(spec.files[1:])}"):
        weights.ensure(spec, WeightsParams(profile="paper", dir=str(tmp_path)))
    tiny = weights.ensure(spec, WeightsParams(profile="tiny", dir=str(tmp_path)))
    (tiny / spec.required("tiny")[-1]).unlink()
    with pytest.raises(WeightsError, match=f"missing {spec.required('tiny')[-1]}"):
        weights.ensure(spec, WeightsParams(profile="tiny", dir=str(tmp_path)))


def test_tiny_htdemucs_loads_with_demucs_own_loader(tmp_path):
    from demucs.pretrained import get_model

    folder = weights.ensure(vocals.WEIGHTS[0], WeightsParams(profile="tiny", dir=str(tmp_path)))
    model = get_model("htdemucs", repo=folder)
    assert list(model.models[0].sources) == ["drums", "bass", "other", "vocals"] and model.models[0].samplerate == 44100


# -- real clips (../shared/data/real) ----------------------------------------------------------------
REAL_SPEECH = {
    "videos/v01_frontal_hdtf_katiehill_25fps_a16k.mp4": (0.5, 1.0),
    "videos/v02_frontal_theresamay_25fps_a48k.mp4": (0.5, 1.0),
    "videos/v08_music_beat_expressive_25fps_a44k.mp4": (0.0, 0.3),
    "audio/a07_song_music_48k_stereo.wav": (0.0, 0.3),
}


def test_speech_ratio_on_real_clips_tells_talking_from_music(real_dir, tmp_path):
    clips = []
    for rel in REAL_SPEECH:
        wav = tmp_path / (rel.split("/")[-1] + ".wav")
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(real_dir / rel), "-vn", "-ac", "1", "-ar", "16000", str(wav)], check=True)
        clips.append(Clip(key=wav.stem.replace(".", "_"), dataset="real", source=rel, source_rel=rel, source_hash="x", files={"wav": str(wav)}))
    ext = speech.Extractor(speech.Params(), WeightsParams(dir=str(tmp_path / "w")))
    ext.setup()
    outs = [tmp_path / f"o{i}" for i in range(len(clips))]
    results = ext.process(clips, outs)
    ratios = {c.source_rel: r.scores["speech_ratio"] for c, r in zip(clips, results)}
    for rel, (lo, hi) in REAL_SPEECH.items():
        assert lo < ratios[rel] < hi if lo else ratios[rel] < hi, (rel, ratios)
    # batching does not change a clip's result
    alone = ext.process(clips[:1], outs[:1])[0]
    assert alone.meta["speech"]["segments"] == results[0].meta["speech"]["segments"]
