"""Each feature's cache key covers exactly what it reads (``Extractor.reads`` + the features it needs)."""

from __future__ import annotations

import pytest

from core.clip import Clip
from pipeline import features
from pipeline.cache import Cache
from pipeline.features import inputs_fingerprint

AUDIO = ("vocals", "speech", "audio_embed", "transcript", "emotion_speech", "valence_arousal", "emotion_text")
VISUAL = ("action_units", "clip_image", "face_va", "latents", "caption", "sync")


def clip(crf: int = 18, mp4: str = "a" * 64, wav: str = "b" * 64, landmarks: str = "c" * 64, **meta) -> Clip:
    encode = {"fps": 25, "frames": 50, "width": 64, "height": 64, "crf": crf, "preset": "fast", "seek_s": 0.0}
    files = {"mp4": "/x/v.mp4", "wav": "/x/a.wav", "landmarks.npy": "/x/l.npy"}
    return Clip("d__s__0000000", "d", "/raw/s.mp4", "s.mp4", "e" * 64, duration=2.0,
                meta={"encode": encode, "face": {"crop": [[1, 2, 3]]}, **meta}, files=files,
                file_hashes={"mp4": mp4, "wav": wav, "landmarks.npy": landmarks})


def key(feature: str, c: Clip) -> str:
    mod = features.load_module(feature)
    needs = getattr(mod, "READS", ())
    return Cache.key("identity", inputs_fingerprint(c, mod.Extractor.reads, needs))


@pytest.mark.parametrize("feature", AUDIO + VISUAL)
def test_every_feature_declares_what_it_reads(feature):
    assert features.load_module(feature).Extractor.reads is not None


@pytest.mark.parametrize("feature", AUDIO)
def test_audio_features_ignore_the_video_but_not_the_wav(feature):
    base = clip()
    assert key(feature, clip(crf=30, mp4="f" * 64, landmarks="0" * 64)) == key(feature, base)  # steps.encode.crf, face track
    if feature != "emotion_text":  # reads the transcript, not the wav itself
        assert key(feature, clip(wav="1" * 64)) != key(feature, base)


@pytest.mark.parametrize("feature", VISUAL)
def test_visual_features_key_on_the_frames(feature):
    base = clip()
    assert key(feature, clip(mp4="f" * 64)) != key(feature, base)
    assert key(feature, clip(crf=30)) == key(feature, base)  # the encode settings enter through the mp4's bytes


def test_a_feature_reading_another_keys_on_its_output():
    with_text = clip(transcript={"text": "hello", "segments": []})
    other = clip(transcript={"text": "bye", "segments": []})
    assert key("emotion_text", with_text) != key("emotion_text", other)
    vocals = clip().evolve(files={"vocals.vocals.wav": "/x/v.wav"}, file_hashes={"vocals.vocals.wav": "2" * 64})
    changed = vocals.evolve(file_hashes={"vocals.vocals.wav": "3" * 64})
    assert key("audio_embed", vocals) != key("audio_embed", changed)
    assert key("audio_embed", vocals.evolve(meta={"encode": {**vocals.meta["encode"], "crf": 30}})) == key("audio_embed", vocals)


def test_a_hit_from_another_clip_keeps_only_the_features_outputs(tmp_path):
    """``adopt``: a cached result computed for another clip with the same wav becomes this clip's."""
    from tests.pipeline import rms_feature
    from core.weights import WeightsParams

    ext = rms_feature.Extractor(rms_feature.Params(), WeightsParams(profile="tiny", dir=str(tmp_path)), tmp_path)
    other = clip(mp4="f" * 64).evolve(key="d__other__0000000")
    cached = [other.evolve(files={"rms.npy": "/c/rms.npy"}, file_hashes={"rms.npy": "4" * 64}, scores={"rms_value": 0.5})]
    mine = clip()
    (got,) = ext.adopt(mine, cached)
    assert got.key == mine.key and got.file_hashes["mp4"] == "a" * 64 and got.files["rms.npy"] == "/c/rms.npy"
    assert got.scores == {"rms_value": 0.5}
    with pytest.raises(ValueError, match="reads"):
        inputs_fingerprint(mine, ("mp4",))
