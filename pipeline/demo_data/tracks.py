"""Per-frame animation tracks that drive the face rig: jaw (from the voice), blinks, head yaw,
and the jittered frame times of the variable-frame-rate clip."""

from __future__ import annotations

import math

import numpy as np

from pipeline.demo_data.voice import envelope


def mouth_track(speech: np.ndarray, sample_rate: int, times: np.ndarray) -> np.ndarray:
    """Jaw opening in [0, 1] at ``times``: the speech envelope on a 30 dB scale below its loud level."""
    env = envelope(speech, sample_rate, times)
    ref = envelope(speech, sample_rate, np.arange(0, len(speech) / sample_rate, 0.01))
    loud = np.percentile(ref, 95) + 1e-9
    db = 20 * np.log10(env / loud + 1e-9)
    return np.clip((db + 30.0) / 30.0, 0.0, 1.0) ** 1.3


def blink_track(times: np.ndarray, seconds: float, seed: int) -> np.ndarray:
    """Blink closure in [0, 1] at ``times``: 0.2 s blinks every 2-5 s (seeded)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(times))
    t = float(rng.uniform(0.6, 2.0))
    while t < seconds:
        u = (times - t) / 0.2
        out = np.maximum(out, np.where((u > 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1)), 0.0))
        t += float(rng.uniform(2.0, 5.0))
    return out


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def yaw_track(times: np.ndarray, yaw_deg: float, seed: int) -> np.ndarray:
    """Head yaw in degrees: a small sway, plus a turn to ``yaw_deg`` in the first 0.6 s that is held."""
    rng = np.random.default_rng(seed)
    sway = 3.0 * np.sin(2 * np.pi * rng.uniform(0.15, 0.3) * times + rng.uniform(0, 2 * np.pi))
    return sway + yaw_deg * _smoothstep(times / 0.6)


def vfr_times(n: int, fps: float, seed: int) -> np.ndarray:
    """Jittered frame times (s) on a 1 ms grid; the same formula is given to ffmpeg's setpts."""
    phi = vfr_phase(seed)
    k = np.arange(n)
    t = (k + 0.3 * np.sin(2.39996 * k + phi) - 0.3 * math.sin(phi)) / fps
    return np.floor(t * 1000 + 1e-6) / 1000


def vfr_phase(seed: int) -> float:
    """Phase of the frame-time jitter (rounded: it is written into ffmpeg's setpts expression)."""
    return round(float(np.random.default_rng(seed).uniform(0, 2 * np.pi)), 4)
