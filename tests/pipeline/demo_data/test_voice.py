"""The synthetic voice: seeded, with phrase pauses and a syllable rhythm."""

from __future__ import annotations

import numpy as np

from pipeline.demo_data.voice import speech_like_audio
from tests.pipeline.demo_data.helpers import frame_db


def test_speech_like_audio_is_seeded_and_has_pauses() -> None:
    a = speech_like_audio(8.0, 16000, seed=3)
    assert a.dtype == np.float32 and a.shape == (128000,)
    assert np.array_equal(a, speech_like_audio(8.0, 16000, seed=3))
    assert not np.array_equal(a, speech_like_audio(8.0, 16000, seed=4))
    assert 0.3 < np.abs(a).max() < 0.7
    db = frame_db(a.astype(np.float64), hop=0.01)
    quiet = db < -55
    # near-silent stretches of 0.3-0.8 s between phrases
    lengths, n = [], 0
    for q in np.append(quiet, False):
        if q:
            n += 1
        elif n:
            lengths.append(n / 100)
            n = 0
    inner = [x for x in lengths if x < 0.9]
    assert inner and all(0.25 <= x <= 0.85 for x in inner if x > 0.2), lengths
    # syllables: the loudness of the speech swings at 3-5 Hz
    loud = db[db > -40]
    spectrum = np.abs(np.fft.rfft(loud - loud.mean()))
    freqs = np.fft.rfftfreq(len(loud), 0.01)
    band = (freqs > 1) & (freqs < 12)
    assert 2.5 <= freqs[band][np.argmax(spectrum[band])] <= 6.5
