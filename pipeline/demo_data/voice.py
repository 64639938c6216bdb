"""The synthetic voice: speech-like audio made with numpy, and its loudness envelope.

A glottal pulse train through three formant resonators, syllables at 3-5 Hz, phrases separated
by 0.3-0.8 s of near silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal


@dataclass(frozen=True)
class Voice:
    f0: float = 180.0  # mean pitch (Hz)
    formant_scale: float = 1.0  # vocal-tract length factor (>1: shorter tract, higher formants)
    syllable_rate: float = 4.0  # syllables per second (3-5)


# (F1, F2, F3) in Hz of a few vowels (adult male averages; scaled per voice).
_VOWELS = np.array(
    [
        (730, 1090, 2440),  # a
        (270, 2290, 3010),  # i
        (300, 870, 2240),  # u
        (530, 1840, 2480),  # e
        (570, 840, 2410),  # o
        (660, 1720, 2410),  # ae
        (490, 1350, 1690),  # er
    ],
    dtype=np.float64,
)
_BANDWIDTHS = (80.0, 100.0, 150.0)
_NOISE_FLOOR_DB = -66.0


def resonator(x: np.ndarray, freq: float, bw: float, sr: int) -> np.ndarray:
    """Two-pole resonance at ``freq`` with bandwidth ``bw`` (unity gain at DC is not kept)."""
    freq = min(freq, 0.45 * sr)
    r = math.exp(-math.pi * bw / sr)
    a = [1.0, -2.0 * r * math.cos(2.0 * math.pi * freq / sr), r * r]
    return signal.lfilter([1.0 - r], a, x)


def bandpass(x: np.ndarray, lo: float, hi: float, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth band-pass (``hi`` capped below Nyquist)."""
    hi = min(hi, 0.45 * sr)
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def phrase_plan(seconds: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(start, end) of each phrase: 1.2-3.2 s of speech, 0.3-0.8 s pauses, 0.15 s lead-in/out."""
    out = []
    t = 0.15
    end = seconds - 0.15
    while t < end - 0.3:
        length = float(rng.uniform(1.2, 3.2))
        stop = min(t + length, end)
        out.append((t, stop))
        t = stop + float(rng.uniform(0.3, 0.8))
    return out


def speech_like_audio(seconds: float, sample_rate: int, seed: int = 0, voice: Voice | None = None) -> np.ndarray:
    """Seeded speech-like mono signal (float32, peak about -6 dBFS).

    Voiced syllables (glottal pulses at ``voice.f0`` with a falling, wavering contour, through
    three vowel formants, some with a fricative onset) at 3-5 Hz, grouped in phrases separated
    by 0.3-0.8 s of near silence (noise floor about -66 dBFS), so a segmenter can cut at pauses.
    """
    rng = np.random.default_rng(seed)
    if voice is None:
        voice = Voice(f0=float(rng.uniform(110, 220)), formant_scale=float(rng.uniform(0.95, 1.12)), syllable_rate=float(rng.uniform(3.2, 4.8)))
    sr = int(sample_rate)
    n = int(round(seconds * sr))
    out = np.zeros(n, dtype=np.float64)
    for p0, p1 in phrase_plan(seconds, rng):
        i0, i1 = int(p0 * sr), int(p1 * sr)
        m = i1 - i0
        tt = np.arange(m) / sr
        # Pitch: declination over the phrase, a slow waver, a per-phrase offset.
        f0 = voice.f0 * (1.0 + 0.06 * rng.standard_normal()) * (1.0 - 0.12 * tt / max(tt[-1], 1e-6))
        f0 = f0 * (1.0 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * tt + rng.uniform(0, 2 * np.pi)))
        phase = np.cumsum(f0 / sr)
        saw = 1.0 - 2.0 * (phase - np.floor(phase))
        # Glottal source: one pulse per cycle (where the saw resets), softened by a one-pole low-pass.
        src = signal.lfilter([1.0], [1.0, -0.7], -0.5 * np.diff(saw, prepend=saw[0]) + 0.02 * saw)
        src += 0.03 * rng.standard_normal(m)  # aspiration
        # Syllables.
        t = 0.0
        seg = np.zeros(m)
        while t < tt[-1] - 0.08:
            dur = 1.0 / (voice.syllable_rate * rng.uniform(0.8, 1.25))
            s0, s1 = int(t * sr), min(int((t + dur) * sr), m)
            if s1 - s0 < int(0.05 * sr):
                break
            vowel = _VOWELS[rng.integers(len(_VOWELS))] * voice.formant_scale
            x = src[s0:s1]
            y = x
            for f, bw in zip(vowel, _BANDWIDTHS):
                y = resonator(y, float(f), bw, sr)
            k = s1 - s0
            w = np.sin(np.pi * (np.arange(k) + 0.5) / k) ** 1.5
            y = y / (np.abs(y).max() + 1e-9) * w * rng.uniform(0.6, 1.0)
            if rng.random() < 0.45:  # fricative onset
                fk = min(int(rng.uniform(0.04, 0.07) * sr), k)
                noise = bandpass(rng.standard_normal(fk), 3500.0, 7500.0, sr)
                noise *= np.hanning(fk) * 0.25 / (np.abs(noise).max() + 1e-9)
                y[:fk] += noise
            seg[s0:s1] += y
            t += dur
        fade = np.ones(m)
        fk = min(int(0.03 * sr), m // 2)
        fade[:fk] = np.linspace(0, 1, fk)
        fade[m - fk :] = np.linspace(1, 0, fk)
        out[i0:i1] += seg * fade
    peak = np.abs(out).max()
    if peak > 0:
        out *= 0.5 / peak
    out += 10 ** (_NOISE_FLOOR_DB / 20) * rng.standard_normal(n)
    sos = signal.butter(2, 60.0, btype="highpass", fs=sr, output="sos")
    return signal.sosfilt(sos, out).astype(np.float32)


def envelope(audio: np.ndarray, sample_rate: int, times: np.ndarray, window: float = 0.04) -> np.ndarray:
    """RMS of ``audio`` (mono) in a ``window``-second window centred on each of ``times``."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    half = int(window * sample_rate / 2)
    centre = np.round(np.asarray(times) * sample_rate).astype(np.int64)
    lo = np.clip(centre - half, 0, len(x))
    hi = np.clip(centre + half, 0, len(x))
    width = np.maximum(hi - lo, 1)
    return np.sqrt(np.maximum(c[hi] - c[lo], 0.0) / width)
