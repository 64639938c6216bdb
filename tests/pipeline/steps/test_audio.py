import numpy as np
import pytest
import soundfile as sf

from pipeline.cache import Cache
from core.media import decode_audio
from pipeline.steps.audio import AudioParams, DecodeAudio, integrated_loudness
from pipeline.steps.probe import Probe
from tests.pipeline.helpers import run_steps, source


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


def test_audio_is_16k_mono_and_loudness_normalised(media, cache):
    (clip,), _ = run_steps([source(media("a.mp4", seconds=4.0, sample_rate=44100), cache)], [Probe(), DecodeAudio()], cache)
    am = clip.meta["audio"]
    x = np.load(clip.files["audio_npy"])
    assert am["sample_rate"] == 16000 and x.dtype == np.float32 and x.ndim == 1
    assert x.size / 16000 == pytest.approx(4.0, abs=0.05)
    a = int(am["span_start_s"] * 16000)
    assert integrated_loudness(x[a:], 16000) == pytest.approx(-23.0, abs=0.5)


def test_audio_start_offset_is_aligned_to_the_video_timeline(media, cache):
    (clip,), _ = run_steps([source(media("o.mp4", seconds=4.0, audio_offset=0.5, audio_seconds=3.5), cache)], [Probe(), DecodeAudio()], cache)
    am = clip.meta["audio"]
    assert am["offset_s"] == pytest.approx(0.5, abs=0.03)
    assert am["span_start_s"] == pytest.approx(0.5, abs=0.03)
    assert am["span_end_s"] == pytest.approx(4.0, abs=0.05)


def test_audio_shorter_than_video_limits_the_span(media, cache):
    (clip,), _ = run_steps([source(media("s.mp4", seconds=5.0, audio_seconds=4.0), cache)], [Probe(), DecodeAudio()], cache)
    assert clip.meta["audio"]["span_end_s"] == pytest.approx(4.0, abs=0.05)


def test_peak_limit_wins_over_loudness_target(media, cache):
    params = AudioParams(target_lufs=-3.0, peak_dbfs=-1.0)
    (clip,), _ = run_steps([source(media("p.mp4", seconds=3.0), cache)], [Probe(), DecodeAudio(params)], cache)
    x = np.load(clip.files["audio_npy"])
    assert clip.meta["audio"]["peak_limited"]
    assert 20 * np.log10(np.abs(x).max()) <= -1.0 + 1e-3


@pytest.mark.real
def test_real_24bit_48k_wav_loads(real_dir):
    path = real_dir / "audio" / "a04_german_speech_48k_s24_stereo.wav"
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (48000, 2, "PCM_24")
    x = decode_audio(path, 16000)
    assert x.size / 16000 == pytest.approx(info.duration, abs=0.01)
    ref = sf.read(path, dtype="float32")[0].mean(axis=1)
    # same loudness before and after resampling (within 0.5 dB): the decode is faithful
    assert integrated_loudness(x, 16000) == pytest.approx(integrated_loudness(ref, 48000), abs=0.5)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_loudness_of_a_tone_follows_bs1770_and_its_gates(rate):
    """A 997 Hz sine of amplitude A reads -3.01 + 20 log10(A) LUFS (BS.1770's calibration); blocks under
    the relative gate (a quiet noise tail) and under the absolute gate (-70 LUFS) are left out."""
    rng = np.random.default_rng(rate)
    t = np.arange(8 * rate) / rate
    tone = (0.1 * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    assert integrated_loudness(tone, rate) == pytest.approx(-23.01, abs=0.1)
    # a third of the signal at ~-60 LUFS, under the relative gate: ungated it would read -24.8
    tail = np.concatenate([tone, (1e-3 * rng.standard_normal(4 * rate)).astype(np.float32)])
    assert integrated_loudness(tail, rate) == pytest.approx(integrated_loudness(tone, rate), abs=0.15)
    assert integrated_loudness(tone * np.float32(1e-4), rate) == float("-inf")  # -103 LUFS
    assert integrated_loudness(np.zeros(rate, np.float32), rate) == float("-inf")
    assert integrated_loudness(tone[: rate // 4], rate) == float("-inf")  # shorter than one 400 ms block
