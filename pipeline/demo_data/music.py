"""The music bed: a seeded chord progression with bass and a drum beat (the ``music`` clip)."""

from __future__ import annotations

import math

import numpy as np

from pipeline.demo_data.voice import bandpass


def music_bed(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Seeded stereo music (float32, shape (n, 2)): a four-chord progression with bass and drums."""
    rng = np.random.default_rng(seed)
    sr = int(sample_rate)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    bpm = float(rng.uniform(96, 112))
    beat = 60.0 / bpm
    key = int(rng.integers(0, 12))
    progressions = [(0, 7, 9, 5), (9, 5, 0, 7), (0, 9, 5, 7), (0, 5, 7, 5)]  # I-V-vi-IV and friends
    prog = progressions[int(rng.integers(len(progressions)))]
    minor = {9}

    def hz(semitone: float) -> float:
        return 220.0 * 2 ** ((semitone + key - 9) / 12.0)  # relative to A3

    left = np.zeros(n)
    right = np.zeros(n)
    bar = 4 * beat
    nbars = int(math.ceil(seconds / bar))
    for b in range(nbars):
        root = prog[b % len(prog)]
        third = 3 if root in minor else 4
        b0, b1 = int(b * bar * sr), min(int((b + 1) * bar * sr), n)
        if b0 >= n:
            break
        tb = t[b0:b1] - b * bar
        env = np.minimum(1.0, tb / 0.08) * np.exp(-tb / (2.5 * bar))
        for j, (iv, pan) in enumerate(((0, 0.3), (third, 0.7), (7, 0.5), (12, 0.4))):
            f = hz(root + iv)
            tone = sum(np.sin(2 * np.pi * k * f * tb + j) / k for k in range(1, 6))
            left[b0:b1] += 0.12 * env * tone * (1 - pan)
            right[b0:b1] += 0.12 * env * tone * pan
        for q in range(4):  # bass, one note per beat
            q0 = b0 + int(q * beat * sr)
            q1 = min(q0 + int(beat * sr), n)
            if q0 >= n:
                break
            tq = np.arange(q1 - q0) / sr
            f = hz(root - 24 + (7 if q == 3 else 0))
            note = (np.sin(2 * np.pi * f * tq) + 0.3 * np.sin(4 * np.pi * f * tq)) * np.exp(-tq / 0.35) * np.minimum(1, tq / 0.01)
            left[q0:q1] += 0.35 * note
            right[q0:q1] += 0.35 * note
    nbeats = int(math.ceil(seconds / beat))
    for k in range(2 * nbeats):  # drums on eighth notes
        s0 = int(k * beat / 2 * sr)
        if s0 >= n:
            break
        if k % 4 == 0:  # kick on beats 1 and 3
            m = min(int(0.25 * sr), n - s0)
            tk = np.arange(m) / sr
            freq = 45 + 70 * np.exp(-tk / 0.04)
            hit = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-tk / 0.12)
            left[s0 : s0 + m] += 0.8 * hit
            right[s0 : s0 + m] += 0.8 * hit
        elif k % 4 == 2:  # snare on 2 and 4
            m = min(int(0.2 * sr), n - s0)
            tk = np.arange(m) / sr
            hit = (bandpass(rng.standard_normal(m), 1500, 6000, sr) * 0.8 + 0.4 * np.sin(2 * np.pi * 185 * tk)) * np.exp(-tk / 0.06)
            left[s0 : s0 + m] += 0.5 * hit
            right[s0 : s0 + m] += 0.5 * hit
        m = min(int(0.04 * sr), n - s0)  # hi-hat on every eighth
        hat = bandpass(rng.standard_normal(m), 7000, 15000, sr) * np.exp(-np.arange(m) / sr / 0.012)
        left[s0 : s0 + m] += 0.25 * hat
        right[s0 : s0 + m] += 0.18 * hat
    out = np.stack([left, right], axis=1)
    out /= np.abs(out).max() + 1e-9
    return (0.5 * out).astype(np.float32)
