"""The embedded demo dataset: a deterministic generator (DESIGN 2, "The embedded sample dataset").

``python -m pipeline.sample [--out data/sample]`` writes a dozen short talking-face videos and a
``sample.json`` that says what each one is for. Everything is made from material that installed
packages ship, so the demo and the tests need no download:

* the face is scikit-image's astronaut photo; its 478 MediaPipe face-mesh landmarks are detected
  once per run, the mesh (MediaPipe's tesselation plus eye and mouth fills and a ring of fixed
  border points for the background) is moved in 3-D (jaw opening with the audio envelope,
  blinks, a head turn of known yaw), projected, and the photo is warped triangle by triangle:
  each triangle is an affine map, triangles are drawn back to front into an id buffer with the
  ones facing away drawn first (so nearer ones hide them), and one ``cv2.remap`` resamples the
  photo;
* the voice is synthesised with numpy: a glottal pulse train through three formant resonators,
  syllables at 3-5 Hz, phrases separated by 0.3-0.8 s of near silence;
* the music bed is a seeded chord progression with bass and a drum beat.

Every clip has a purpose (``clean``, ``long``, ``short``, ``no_audio``, ``corrupt``, ``music``,
``two_faces``, ``head_turn``, ``vfr``, ``offset``) so that each ingest rule meets a case. The
output is byte-identical from run to run: seeded RNGs, single-threaded bit-exact ffmpeg, no
metadata, frames and audio piped into ffmpeg.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy import signal
from scipy.spatial import Delaunay

from pipeline import params as params_mod

VERSION = 1
MANIFEST = "sample.json"


@dataclass(frozen=True)
class SampleParams:
    """The ``sample`` section of params.yaml."""

    seed: int = 0  # every random choice (speech, blinks, music, VFR jitter) derives from it
    size: int = 384  # frame height in pixels (single-face clips are square)
    crf: int = 20  # libx264 quality
    long_seconds: float = 26.0  # the clip that ingest must split (> 20 s)


# --------------------------------------------------------------------------------------------
# Speakers: three looks of the one photo and three voices, so that splits can be identity-disjoint.


@dataclass(frozen=True)
class Voice:
    f0: float = 180.0  # mean pitch (Hz)
    formant_scale: float = 1.0  # vocal-tract length factor (>1: shorter tract, higher formants)
    syllable_rate: float = 4.0  # syllables per second (3-5)


@dataclass(frozen=True)
class Look:
    zoom: float = 1.0  # >1: the face fills more of the frame
    flip: bool = False  # mirror the frame
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB gains


@dataclass(frozen=True)
class Speaker:
    voice: Voice
    look: Look


SPEAKERS: dict[str, Speaker] = {
    "spk_a": Speaker(Voice(f0=205.0, formant_scale=1.12, syllable_rate=4.2), Look()),
    "spk_b": Speaker(Voice(f0=120.0, formant_scale=0.94, syllable_rate=3.6), Look(zoom=1.1, flip=True, tint=(0.94, 1.0, 1.08))),
    "spk_c": Speaker(Voice(f0=160.0, formant_scale=1.04, syllable_rate=4.6), Look(zoom=0.9, tint=(1.07, 1.0, 0.92))),
}


# --------------------------------------------------------------------------------------------
# Audio


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


def _resonator(x: np.ndarray, freq: float, bw: float, sr: int) -> np.ndarray:
    """Two-pole resonance at ``freq`` with bandwidth ``bw`` (unity gain at DC is not kept)."""
    freq = min(freq, 0.45 * sr)
    r = math.exp(-math.pi * bw / sr)
    a = [1.0, -2.0 * r * math.cos(2.0 * math.pi * freq / sr), r * r]
    return signal.lfilter([1.0 - r], a, x)


def _bandpass(x: np.ndarray, lo: float, hi: float, sr: int, order: int = 2) -> np.ndarray:
    hi = min(hi, 0.45 * sr)
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _phrase_plan(seconds: float, rng: np.random.Generator) -> list[tuple[float, float]]:
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
    for p0, p1 in _phrase_plan(seconds, rng):
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
                y = _resonator(y, float(f), bw, sr)
            k = s1 - s0
            w = np.sin(np.pi * (np.arange(k) + 0.5) / k) ** 1.5
            y = y / (np.abs(y).max() + 1e-9) * w * rng.uniform(0.6, 1.0)
            if rng.random() < 0.45:  # fricative onset
                fk = min(int(rng.uniform(0.04, 0.07) * sr), k)
                noise = _bandpass(rng.standard_normal(fk), 3500.0, 7500.0, sr)
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
            hit = (_bandpass(rng.standard_normal(m), 1500, 6000, sr) * 0.8 + 0.4 * np.sin(2 * np.pi * 185 * tk)) * np.exp(-tk / 0.06)
            left[s0 : s0 + m] += 0.5 * hit
            right[s0 : s0 + m] += 0.5 * hit
        m = min(int(0.04 * sr), n - s0)  # hi-hat on every eighth
        hat = _bandpass(rng.standard_normal(m), 7000, 15000, sr) * np.exp(-np.arange(m) / sr / 0.012)
        left[s0 : s0 + m] += 0.25 * hat
        right[s0 : s0 + m] += 0.18 * hat
    out = np.stack([left, right], axis=1)
    out /= np.abs(out).max() + 1e-9
    return (0.5 * out).astype(np.float32)


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


def mouth_track(speech: np.ndarray, sample_rate: int, times: np.ndarray) -> np.ndarray:
    """Jaw opening in [0, 1] at ``times``: the speech envelope on a 30 dB scale below its loud level."""
    env = envelope(speech, sample_rate, times)
    ref = envelope(speech, sample_rate, np.arange(0, len(speech) / sample_rate, 0.01))
    loud = np.percentile(ref, 95) + 1e-9
    db = 20 * np.log10(env / loud + 1e-9)
    return np.clip((db + 30.0) / 30.0, 0.0, 1.0) ** 1.3


# --------------------------------------------------------------------------------------------
# Face: landmarks, mesh, and the warp


def _cycle(edges) -> list[int]:
    """Order the vertices of a closed loop given as a set of edges."""
    nb: dict[int, list[int]] = {}
    for a, b in edges:
        nb.setdefault(a, []).append(b)
        nb.setdefault(b, []).append(a)
    start = min(nb)
    loop = [start]
    prev, cur = None, start
    while True:
        nxt = [v for v in sorted(nb[cur]) if v != prev][0]
        if nxt == start:
            break
        loop.append(nxt)
        prev, cur = cur, nxt
    return loop


def _mesh_triangles(edges) -> np.ndarray:
    """The faces of the MediaPipe tesselation (its 3-cliques minus separating triangles)."""
    nb: dict[int, set[int]] = {}
    for a, b in edges:
        nb.setdefault(a, set()).add(b)
        nb.setdefault(b, set()).add(a)
    tris = set()
    for a, b in edges:
        for c in nb[a] & nb[b]:
            tris.add(tuple(sorted((a, b, c))))
    use: dict[tuple[int, int], int] = {}
    for t in tris:
        for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])):
            use[e] = use.get(e, 0) + 1
    # A 3-cycle whose every edge is shared by three triangles is not a face of the mesh.
    faces = [t for t in sorted(tris) if not all(use[e] > 2 for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])))]
    return np.array(faces, dtype=np.int64)


@dataclass(frozen=True)
class FaceModel:
    """The photo and its mesh, in source pixels (z in the same scale, larger = farther)."""

    image: np.ndarray  # RGB uint8
    points: np.ndarray  # (478, 3) float64
    triangles: np.ndarray  # (T, 3) tesselation faces
    oval: tuple[int, ...]  # face outline, ordered
    inner_lips: tuple[int, ...]  # mouth opening, ordered
    upper_inner_lip: tuple[int, ...]  # corner to corner along the upper lip
    eyes: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]  # (contour, iris, upper lid)


_FACE: list[FaceModel] = []  # the detection of this run (worker processes receive it)


def face_model() -> FaceModel:
    """The astronaut's face mesh, detected once per process (MediaPipe, static image mode)."""
    if not _FACE:
        _FACE.append(_detect_face())
    return _FACE[0]


def _detect_face() -> FaceModel:
    import mediapipe as mp
    import skimage.data

    image = np.ascontiguousarray(skimage.data.astronaut())
    fm = mp.solutions.face_mesh
    with fm.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1, min_detection_confidence=0.5) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        raise RuntimeError("MediaPipe found no face in skimage.data.astronaut()")
    h, w = image.shape[:2]
    pts = np.array([(p.x * w, p.y * h, p.z * w) for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)
    # Rounded so that tiny run-to-run differences in the detector cannot change the bytes.
    pts = np.round(pts, 2)
    inner = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
    eyes = []
    for contour_edges, iris_edges in ((fm.FACEMESH_RIGHT_EYE, fm.FACEMESH_RIGHT_IRIS), (fm.FACEMESH_LEFT_EYE, fm.FACEMESH_LEFT_IRIS)):
        contour = _cycle(contour_edges)
        ring = sorted({v for e in iris_edges for v in e})
        iris = tuple([min(ring) - 1] + ring)  # the centre precedes its four ring points
        xs = pts[contour, 0]
        left, right = contour[int(np.argmin(xs))], contour[int(np.argmax(xs))]
        # Walk the contour from corner to corner both ways; the upper lid is the way with smaller y.
        i, j = contour.index(left), contour.index(right)
        way1 = [contour[(i + k) % len(contour)] for k in range((j - i) % len(contour) + 1)]
        way2 = [contour[(i - k) % len(contour)] for k in range((i - j) % len(contour) + 1)]
        upper = way1 if pts[way1[1:-1], 1].mean() < pts[way2[1:-1], 1].mean() else way2
        eyes.append((tuple(contour), iris, tuple(upper)))
    return FaceModel(
        image=image,
        points=pts,
        triangles=_mesh_triangles(fm.FACEMESH_TESSELATION),
        oval=tuple(_cycle(fm.FACEMESH_FACE_OVAL)),
        inner_lips=inner,
        upper_inner_lip=inner[:11],
        eyes=tuple(eyes),
    )


def _inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in pts])


def _fill_triangles(poly_idx: list[int], extra: list[int], pts2d: np.ndarray) -> list[tuple[int, int, int]]:
    """Delaunay triangles over ``poly_idx + extra`` whose centroid lies inside the polygon."""
    idx = list(poly_idx) + list(extra)
    tri = Delaunay(pts2d[idx])
    cents = pts2d[idx][tri.simplices].mean(axis=1)
    keep = _inside(pts2d[list(poly_idx)], cents)
    return [tuple(idx[v] for v in s) for s, k in zip(tri.simplices, keep) if k]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class FaceRig:
    """The photo, cropped to a square of ``size`` pixels around the face, ready to animate."""

    def __init__(self, face: FaceModel, size: int, look: Look = Look()):
        self.face, self.size, self.look = face, size, look
        # The look is applied to the photo once: a tinted and/or mirrored photo and mesh.
        image, p = face.image, face.points.copy()
        if look.flip:
            image = image[:, ::-1]
            p[:, 0] = image.shape[1] - 1 - p[:, 0]
        if look.tint != (1.0, 1.0, 1.0):
            image = np.clip(np.round(image * np.array(look.tint)), 0, 255).astype(np.uint8)
        self.image = np.ascontiguousarray(image)
        img_h, img_w = image.shape[:2]
        oval = np.array(face.oval)
        ox0, oy0 = p[oval, :2].min(axis=0)
        ox1, oy1 = p[oval, :2].max(axis=0)
        face_w, face_h = ox1 - ox0, oy1 - oy0
        side = min(2.4 * face_h / look.zoom, float(min(img_h, img_w)))
        cx, cy = (ox0 + ox1) / 2, (oy0 + oy1) / 2 + 0.08 * face_h
        x0 = float(np.clip(cx - side / 2, 0, img_w - side))
        y0 = float(np.clip(cy - side / 2, 0, img_h - side))
        s = size / side
        self.scale, self.origin = s, np.array([x0, y0])

        nf = len(p)
        inner = list(face.inner_lips)
        # Vertices: 478 face points, copies of the inner-lip points that ignore the jaw (the
        # teeth stay with the skull), a ring around the head, and fixed points on the border.
        ccx, ccy = (ox0 + ox1) / 2, (oy0 + oy1) / 2
        ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ring = np.stack([ccx + 0.78 * face_w * np.cos(ang), ccy + 0.68 * face_h * np.sin(ang)], axis=1)
        ring = (ring - self.origin) * s
        ring = np.clip(ring, 4.0, size - 5.0)
        lin = np.linspace(-1.0, size, 7)
        border = np.array(
            [(x, -1.0) for x in lin] + [(size, y) for y in lin[1:]] + [(x, size) for x in lin[-2::-1]] + [(-1.0, y) for y in lin[-2:0:-1]]
        )
        self.rest = np.concatenate([(p - np.array([x0, y0, 0.0])) * s, (p[inner] - np.array([x0, y0, 0.0])) * s])
        self.n_moving = len(self.rest)
        fixed = np.concatenate([ring, border])
        self.fixed = fixed
        self.n_ring = len(ring)
        src_fixed = fixed / s + self.origin
        self.src = np.concatenate([p[:, :2], p[inner, :2], src_fixed]).astype(np.float64)
        teeth_ids = {v: nf + k for k, v in enumerate(inner)}
        all_rest2d = np.concatenate([self.rest[:, :2], fixed])

        # Triangles: face, eyes, teeth (inside the inner lips, on the jaw-free copies), background.
        face_tris = [tuple(t) for t in face.triangles]
        eye_tris = []
        for contour, iris, _ in face.eyes:
            eye_tris += _fill_triangles(list(contour), list(iris), all_rest2d)
        teeth = [tuple(teeth_ids[v] for v in t) for t in _fill_triangles(inner, [], all_rest2d)]
        ring_ids = list(range(self.n_moving, self.n_moving + len(fixed)))
        bg = Delaunay(all_rest2d[list(oval) + ring_ids])
        bg_idx = list(oval) + ring_ids
        cents = all_rest2d[bg_idx][bg.simplices].mean(axis=1)
        outside = ~_inside(all_rest2d[list(oval)], cents)
        bg_tris = [tuple(bg_idx[v] for v in sm) for sm, k in zip(bg.simplices, outside) if k]
        self.tris = np.array(face_tris + eye_tris + teeth + bg_tris, dtype=np.int64)
        n2, n3 = len(face_tris) + len(eye_tris), len(face_tris) + len(eye_tris) + len(teeth)
        self.kind = np.zeros(len(self.tris), dtype=np.int8)  # 0 face/eye, 1 teeth, 2 background
        self.kind[n2:n3] = 1
        self.kind[n3:] = 2
        self.rest_area = self._areas(all_rest2d)
        self.cavity = np.array(inner)

        # Pivot of the head turn: on the face's vertical midline, a little over halfway from the
        # nose tip back to the ears, so that the face turns inside the outline of the head.
        ears, nose = self.rest[[234, 454], 2].mean(), self.rest[1, 2]
        self.pivot = np.array([self.rest[oval, 0].mean(), 0.0, nose + 0.55 * (ears - nose)])

        # Jaw: points below the mouth line move down; the lower lip opens as an ellipse, the
        # chin moves as a whole, the cheeks fade out towards the ears.
        r = self.rest
        upper = list(face.upper_inner_lip)
        order = np.argsort(r[upper, 0])
        ux, uy = r[upper, 0][order], r[upper, 1][order]
        mx0, mx1 = ux[0], ux[-1]
        mcx, mw = (mx0 + mx1) / 2, (mx1 - mx0)
        chin = r[152, 1]
        line = np.interp(r[:nf, 0], ux, uy)
        d = (r[:nf, 1] - line) / max(chin - np.interp(mcx, ux, uy), 1.0)
        u = np.abs(r[:nf, 0] - mcx) / (mw / 2)
        fw = face_w * s
        w_in = np.sqrt(np.clip(1 - u**2, 0, 1)) * (1 - np.clip(d / 0.4, 0, 1)) + np.clip(d / 0.4, 0, 1)
        lateral = np.clip(1 - (np.abs(r[:nf, 0] - mcx) - mw / 2) / (fw / 2 - mw / 2), 0, 1)
        w_out = np.clip(d / 0.4, 0, 1) * lateral
        w = np.where(u <= 1, w_in, w_out)
        w = np.where(d > 1e-6, w, 0.0)
        lower_inner = [v for v in inner if v not in upper]
        w[lower_inner] = np.sqrt(np.clip(1 - u[lower_inner] ** 2, 0, 1))
        self.jaw_w = np.concatenate([w, np.zeros(len(inner))])
        self.jaw_amp = 0.11 * face_h * s

        # Blinks: each upper lid, the iris and the skin just above close onto the lower lid.
        dy = np.zeros(self.n_moving)
        for contour, iris, up in face.eyes:
            lower = [v for v in contour if v not in up[1:-1]]
            lo_sorted = sorted(lower, key=lambda v: r[v, 0])
            up_sorted = sorted(up, key=lambda v: r[v, 0])
            lx, ly = r[lo_sorted, 0], r[lo_sorted, 1]
            upx, upy = r[up_sorted, 0], r[up_sorted, 1]
            ex0, ex1 = lx[0], lx[-1]
            ew = ex1 - ex0
            eh = float((np.interp(upx, lx, ly) - upy).max())
            x = r[:nf, 0]
            y = r[:nf, 1]
            xc = np.clip(x, ex0, ex1)
            ylow, yup = np.interp(xc, lx, ly), np.interp(xc, upx, upy)
            lat = np.clip(1 - np.maximum(ex0 - x, x - ex1) / (0.3 * ew), 0, 1)
            between = (y > yup - 1e-6) & (y < ylow - 1e-6)
            above = (y <= yup) & (y > yup - 1.2 * eh)
            full = 0.92 * (ylow - yup)
            move = np.where(between, 0.92 * (ylow - y), np.where(above, full * (1 - (yup - y) / (1.2 * eh)), 0.0)) * lat
            move[list(lower)] = 0.0
            dy[:nf] += np.maximum(move, 0.0)
        self.blink_dy = dy

        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self._xs, self._ys = xs, ys
        self._mouth_rgb = np.array([70, 22, 28], dtype=np.float32)
        self._precompute()

    def _areas(self, pts2d: np.ndarray) -> np.ndarray:
        a, b, c = pts2d[self.tris[:, 0]], pts2d[self.tris[:, 1]], pts2d[self.tris[:, 2]]
        return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))

    def pose(self, mouth: float = 0.0, blink: float = 0.0, yaw_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Projected 2-D positions (output pixels) and depths of every vertex."""
        p = self.rest.copy()
        p[:, 1] += mouth * self.jaw_amp * self.jaw_w + blink * self.blink_dy
        th = math.radians(yaw_deg)
        c, s = math.cos(th), math.sin(th)
        dx, dz = p[:, 0] - self.pivot[0], p[:, 2] - self.pivot[2]
        x = self.pivot[0] + dx * c - dz * s  # positive yaw moves the nose towards image right
        z = self.pivot[2] + dx * s + dz * c
        pts = np.concatenate([np.stack([x, p[:, 1]], axis=1), self.fixed])
        depth = np.concatenate([z, np.full(len(self.fixed), np.inf)])
        return pts, depth

    def _coefficients(self, pts: np.ndarray) -> np.ndarray:
        """Per-triangle affine maps from output to photo pixels, flattened 6 per triangle
        (u = c0 x + c2 y + c4, v = c1 x + c3 y + c5), then two rows: the cavity and the crop map."""
        d = pts[self.tris]
        s = self.src[self.tris]
        dx1, dy1 = d[:, 1, 0] - d[:, 0, 0], d[:, 1, 1] - d[:, 0, 1]
        dx2, dy2 = d[:, 2, 0] - d[:, 0, 0], d[:, 2, 1] - d[:, 0, 1]
        det = dx1 * dy2 - dx2 * dy1
        det = np.where(np.abs(det) < 1e-9, 1.0, det)
        ds1 = s[:, 1] - s[:, 0]  # (n, 2)
        ds2 = s[:, 2] - s[:, 0]
        cx = (ds1 * dy2[:, None] - ds2 * dy1[:, None]) / det[:, None]
        cy = (ds2 * dx1[:, None] - ds1 * dx2[:, None]) / det[:, None]
        c0 = s[:, 0] - cx * d[:, 0, :1] - cy * d[:, 0, 1:]
        coef = np.concatenate([cx, cy, c0], axis=1)
        crop = np.array([1 / self.scale, 0, 0, 1 / self.scale, self.origin[0], self.origin[1]])
        return np.concatenate([coef, crop[None], crop[None]]).astype(np.float32).reshape(-1)

    def _maps(self, ids: np.ndarray, coef: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        base = ids[y0:y1, x0:x1] * 6
        xs, ys = self._xs[y0:y1, x0:x1], self._ys[y0:y1, x0:x1]
        map_x = np.take(coef, base) * xs + np.take(coef, base + 2) * ys + np.take(coef, base + 4)
        map_y = np.take(coef, base + 1) * xs + np.take(coef, base + 3) * ys + np.take(coef, base + 5)
        return map_x, map_y

    def render(self, mouth: float = 0.0, blink: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
        """One RGB frame (size x size, uint8)."""
        size = self.size
        pts, depth = self.pose(mouth, blink, yaw_deg)
        tris, kind = self.tris, self.kind
        n = len(tris)
        cavity_id = n
        area = self._areas(pts)
        drawable = np.abs(area) >= 0.05
        back = np.sign(area) != np.sign(self.rest_area)
        tri_depth = depth[tris].mean(axis=1)
        # Painter's order: faces turned away first (far to near), then the background, the
        # mouth cavity, the teeth, and the visible faces far to near. Triangles whose corners
        # are all fixed are in the precomputed buffer already.
        backs = np.flatnonzero(back & drawable & (kind != 2))
        backs = backs[np.argsort(-tri_depth[backs], kind="stable")]
        bg = np.flatnonzero((kind == 2) & drawable & ~self.static)
        teeth = np.flatnonzero((kind == 1) & drawable & ~back)
        front = np.flatnonzero((kind == 0) & drawable & ~back)
        front = front[np.argsort(-tri_depth[front], kind="stable")]
        corners = np.round(pts * 16).astype(np.int32)[tris]  # 1/16 pixel fixed point
        ids = self._static_ids.copy()
        fill = cv2.fillConvexPoly
        first = np.concatenate([backs, bg])
        for c, i in zip(list(corners[first]), first.tolist()):
            fill(ids, c, i, 8, 4)
        if mouth > 0.02:
            cv2.fillPoly(ids, [np.round(pts[self.cavity] * 16).astype(np.int32)], cavity_id, 8, 4)
        last = np.concatenate([teeth, front])
        for c, i in zip(list(corners[last]), last.tolist()):
            fill(ids, c, i, 8, 4)
        ids[ids < 0] = n + 1

        # Only the box around the moving triangles changes; the rest is the precomputed frame.
        lo = np.floor(np.minimum(pts[: self.n_moving].min(axis=0), self._ring_lo)).astype(int) - 1
        hi = np.ceil(np.maximum(pts[: self.n_moving].max(axis=0), self._ring_hi)).astype(int) + 2
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], size), min(hi[1], size)
        map_x, map_y = self._maps(ids, self._coefficients(pts), y0, y1, x0, x1)
        frame = self._static_frame.copy()
        frame[y0:y1, x0:x1] = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        if mouth > 0.02:
            cx0, cy0 = np.floor(pts[self.cavity].min(axis=0)).astype(int) - 2
            cx1, cy1 = np.ceil(pts[self.cavity].max(axis=0)).astype(int) + 3
            cx0, cy0, cx1, cy1 = max(cx0, 0), max(cy0, 0), min(cx1, size), min(cy1, size)
            cav = ids[cy0:cy1, cx0:cx1] == cavity_id
            if cav.any():
                alpha = cv2.GaussianBlur(cav.astype(np.float32), (3, 3), 0)[..., None]
                depth_y = np.clip((self._ys[cy0:cy1, cx0:cx1] - cy0) / max(cy1 - cy0, 1), 0, 1)[..., None]
                colour = self._mouth_rgb * (1.0 - 0.5 * depth_y)
                box = frame[cy0:cy1, cx0:cx1]
                frame[cy0:cy1, cx0:cx1] = (box * (1 - alpha) + colour * alpha).round().astype(np.uint8)
        return frame

    def _precompute(self) -> None:
        """The id buffer and frame of the triangles that never move (background near the border)."""
        size = self.size
        rest = np.concatenate([self.rest[:, :2], self.fixed])
        self.static = (self.tris >= self.n_moving).all(axis=1)
        ids = np.full((size, size), -1, dtype=np.int32)
        corners = np.round(rest * 16).astype(np.int32)[self.tris]
        for i in np.flatnonzero(self.static).tolist():
            cv2.fillConvexPoly(ids, corners[i], i, 8, 4)
        self._static_ids = ids
        full = ids.copy()
        full[full < 0] = len(self.tris) + 1
        map_x, map_y = self._maps(full, self._coefficients(rest), 0, size, 0, size)
        self._static_frame = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        ring = self.fixed[: self.n_ring]
        self._ring_lo, self._ring_hi = ring.min(axis=0), ring.max(axis=0)


@lru_cache(maxsize=8)
def _rig(size: int, look: Look) -> FaceRig:
    return FaceRig(face_model(), size, look)


# --------------------------------------------------------------------------------------------
# Clips


def _fps_fraction(fps: float | str | Fraction) -> Fraction:
    if isinstance(fps, Fraction):
        return fps
    if isinstance(fps, str):
        return Fraction(fps)
    for ntsc in (24000, 30000, 60000):
        if abs(fps - ntsc / 1001) < 1e-3:
            return Fraction(ntsc, 1001)
    return Fraction(fps).limit_denominator(1000)


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


def yaw_track(times: np.ndarray, yaw_deg: float, seed: int) -> np.ndarray:
    """Head yaw in degrees: a small sway, plus a turn to ``yaw_deg`` in the first 0.6 s that is held."""
    rng = np.random.default_rng(seed)
    sway = 3.0 * np.sin(2 * np.pi * rng.uniform(0.15, 0.3) * times + rng.uniform(0, 2 * np.pi))
    return sway + yaw_deg * _smoothstep(times / 0.6)


def vfr_times(n: int, fps: float, seed: int) -> np.ndarray:
    """Jittered frame times (s) on a 1 ms grid; the same formula is given to ffmpeg's setpts."""
    phi = _vfr_phase(seed)
    k = np.arange(n)
    t = (k + 0.3 * np.sin(2.39996 * k + phi) - 0.3 * math.sin(phi)) / fps
    return np.floor(t * 1000 + 1e-6) / 1000


def _vfr_phase(seed: int) -> float:
    return round(float(np.random.default_rng(seed).uniform(0, 2 * np.pi)), 4)


def _ffmpeg(args: list[str], frames, audio: np.ndarray | None) -> None:
    """Run ffmpeg with raw frames on stdin and (optionally) raw f32 audio on a second pipe
    (``{AUDIO}`` in ``args`` names it); ffmpeg is stopped if producing a frame fails."""
    pass_fds: tuple[int, ...] = ()
    read_fd = write_fd = None
    if audio is not None:
        read_fd, write_fd = os.pipe()
        args = [a.replace("{AUDIO}", f"pipe:{read_fd}") for a in args]
        pass_fds = (read_fd,)
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(["ffmpeg", *args], stdin=subprocess.PIPE, stderr=log, pass_fds=pass_fds)
        finally:
            if read_fd is not None:
                os.close(read_fd)
        writer = None
        if write_fd is not None:
            data = np.ascontiguousarray(audio, dtype="<f4").tobytes()

            def feed() -> None:
                try:
                    with os.fdopen(write_fd, "wb") as f:
                        f.write(data)
                except BrokenPipeError:
                    pass

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
        try:
            for frame in frames:
                proc.stdin.write(frame.tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status and log say why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            rc = proc.wait()
            if writer is not None:
                writer.join()
        if rc != 0:
            log.seek(0)
            raise RuntimeError(f"ffmpeg failed ({rc}): {log.read().decode(errors='replace')[-2000:]}")


BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


def render_talking_clip(
    path: Path | str,
    seconds: float,
    fps: float | str | Fraction = 25,
    sample_rate: int = 44100,
    channels: int = 2,
    yaw_deg: float = 0.0,
    seed: int = 0,
    size: int = 384,
    music: bool = False,
    audio: bool = True,
    faces: int = 1,
    speaker: str = "spk_a",
    audio_offset: float = 0.0,
    vfr: bool = False,
    crf: int = 20,
) -> dict:
    """Write one talking-face video; returns its properties (the sample.json entry, less purpose).

    ``faces=2`` puts a second (silent, blinking) speaker on the right: a ``2*size x size`` frame.
    ``audio_offset`` delays the audio track (it starts that many seconds after the video, in
    sync with the mouth). ``vfr`` writes jittered frame timestamps (use a .mkv path).
    """
    path = Path(path)
    rate = _fps_fraction(fps)
    spk = SPEAKERS[speaker]
    n_frames = int(round(seconds * rate))
    if vfr:
        times = vfr_times(n_frames, float(rate), seed)
    else:
        times = np.arange(n_frames) / float(rate)
    speech = speech_like_audio(seconds - audio_offset, sample_rate, seed=seed, voice=spk.voice)
    mouth = mouth_track(speech, sample_rate, times - audio_offset)
    mouth[times < audio_offset] = 0.0
    blinks = blink_track(times, seconds, seed + 1)
    yaws = yaw_track(times, yaw_deg, seed + 2)
    rig = _rig(size, spk.look)
    others = []
    if faces > 1:
        names = [s for s in SPEAKERS if s != speaker]
        for k in range(faces - 1):
            name = names[k % len(names)]
            others.append((_rig(size, SPEAKERS[name].look), blink_track(times, seconds, seed + 11 + k), yaw_track(times, 0.0, seed + 21 + k)))

    def frames():
        for i in range(n_frames):
            img = rig.render(float(mouth[i]), float(blinks[i]), float(yaws[i]))
            if others:
                img = np.concatenate([img] + [r.render(0.0, float(b[i]), float(y[i])) for r, b, y in others], axis=1)
            yield cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420)  # BT.601 limited range, as ffmpeg's default

    width = size * faces
    args = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-threads", "1"]
    args += ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{size}", "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0"]
    mix = None
    if audio:
        mix = np.repeat(speech[:, None], channels, axis=1)
        if music:
            bed = music_bed(seconds - audio_offset, sample_rate, seed + 3)
            if channels != 2:
                bed = np.repeat(bed.mean(axis=1, keepdims=True), channels, axis=1)
            active = envelope(speech, sample_rate, np.arange(0, len(speech) / sample_rate, 0.02)) > 10 ** (-40 / 20)
            speech_rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)) / max(np.sqrt(active.mean()), 1e-3))
            bed = bed * (speech_rms / (float(np.sqrt(np.mean(bed.astype(np.float64) ** 2))) + 1e-9))
            mix = mix + bed
        peak = float(np.abs(mix).max())
        if peak > 0.98:
            mix = mix * (0.98 / peak)
        if audio_offset:
            args += ["-itsoffset", f"{audio_offset}"]
        args += ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "{AUDIO}"]
    args += ["-map", "0:v"] + (["-map", "1:a"] if audio else [])
    if vfr:
        phi = _vfr_phase(seed)
        args += ["-vf", f"settb=1/1000,setpts=floor((N+0.3*sin(2.39996*N+{phi})-0.3*sin({phi}))/{float(rate)}*1000+1e-6)", "-fps_mode", "vfr", "-enc_time_base:v", "1/1000"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-x264-params", "threads=1:sliced-threads=0"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "128k"]
    args += BITEXACT + [str(path)]
    _ffmpeg(args, frames(), mix)
    return {
        "file": path.name,
        "speaker": speaker,
        "fps": round(float(rate), 5),
        "fps_fraction": f"{rate.numerator}/{rate.denominator}",
        "sample_rate": sample_rate if audio else None,
        "channels": channels if audio else 0,
        "duration": round(seconds, 3),
        "width": width,
        "height": size,
        "faces": faces,
        "yaw_deg": float(yaw_deg),
        "music": music,
        "audio_offset": audio_offset,
        "vfr": vfr,
    }


@dataclass(frozen=True)
class ClipSpec:
    file: str
    purpose: str
    speaker: str
    seconds: float
    fps: str = "25"
    sample_rate: int = 44100
    yaw_deg: float = 0.0
    music: bool = False
    audio: bool = True
    faces: int = 1
    audio_offset: float = 0.0
    vfr: bool = False
    truncate: float = 0.0  # keep only this fraction of the bytes (a broken download)


def clip_plan(p: SampleParams) -> list[ClipSpec]:
    """What the dataset contains, each clip on purpose."""
    return [
        ClipSpec("clean_24fps_44k.mp4", "clean", "spk_a", 6.0, "24", 44100),
        ClipSpec("clean_2997fps_48k.mp4", "clean", "spk_b", 5.0, "30000/1001", 48000),
        ClipSpec("clean_30fps_44k.mp4", "clean", "spk_c", 5.0, "30", 44100),
        ClipSpec("clean_50fps_48k.mp4", "clean", "spk_a", 4.0, "50", 48000),
        ClipSpec(f"long_{format(p.long_seconds, 'g').replace('.', 'p')}s.mp4", "long", "spk_b", p.long_seconds, "25", 44100),
        ClipSpec("short_2s.mp4", "short", "spk_c", 2.0, "25", 44100),
        ClipSpec("no_audio.mp4", "no_audio", "spk_a", 4.0, "25", audio=False),
        ClipSpec("corrupt_truncated.mp4", "corrupt", "spk_b", 4.0, "25", 44100, truncate=0.4),
        ClipSpec("music_under_speech.mp4", "music", "spk_c", 6.0, "25", 44100, music=True),
        ClipSpec("two_faces.mp4", "two_faces", "spk_a", 5.0, "25", 44100, faces=2),
        ClipSpec("head_turn_60.mp4", "head_turn", "spk_b", 6.0, "25", 48000, yaw_deg=60.0),
        ClipSpec("vfr_jitter.mkv", "vfr", "spk_c", 5.0, "25", 48000, vfr=True),
        ClipSpec("audio_offset_500ms.mp4", "offset", "spk_a", 5.0, "25", 44100, audio_offset=0.5),
    ]


def _clip_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2**31))


def build_clip(spec: ClipSpec, index: int, out_dir: Path, p: SampleParams) -> dict:
    """Render one planned clip into ``out_dir``; returns its sample.json entry."""
    target = out_dir / spec.file
    path = target.with_name(f".full-{spec.file}") if spec.truncate else target
    info = render_talking_clip(
        path,
        spec.seconds,
        spec.fps,
        sample_rate=spec.sample_rate,
        yaw_deg=spec.yaw_deg,
        seed=_clip_seed(p.seed, index),
        size=p.size,
        music=spec.music,
        audio=spec.audio,
        faces=spec.faces,
        speaker=spec.speaker,
        audio_offset=spec.audio_offset,
        vfr=spec.vfr,
        crf=p.crf,
    )
    if spec.truncate:
        data = path.read_bytes()
        target.write_bytes(data[: int(len(data) * spec.truncate)])
        path.unlink()
        info["file"] = spec.file
        info["truncated_fraction"] = spec.truncate
    return {"file": info.pop("file"), "speaker": info.pop("speaker"), "purpose": spec.purpose, **info}


def _init_worker(face: FaceModel) -> None:
    _FACE[:] = [face]


def generate(out: Path | str, p: SampleParams = SampleParams(), jobs: int = 1) -> dict:
    """Build the dataset into ``out`` atomically (temp folder beside it, then swap)."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        plan = clip_plan(p)
        face = face_model()  # detect once; worker processes receive the result
        if jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # Longest clips first so that the workers finish together; results in plan order.
            order = sorted(range(len(plan)), key=lambda i: -plan[i].seconds * float(Fraction(plan[i].fps)) * plan[i].faces)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(face,)) as pool:
                futures = {i: pool.submit(build_clip, plan[i], i, tmp, p) for i in order}
                clips = [futures[i].result() for i in range(len(plan))]
        else:
            clips = [build_clip(spec, i, tmp, p) for i, spec in enumerate(plan)]
        manifest = {
            "generator": "pipeline.sample",
            "version": VERSION,
            "params": params_mod.as_dict(p),
            "clips": clips,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.sample", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/sample", help="output folder (replaced atomically)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="clips rendered at once (output does not depend on it)")
    args = ap.parse_args(argv)
    p = params_mod.load(SampleParams, "sample")
    t0 = time.perf_counter()
    manifest = generate(args.out, p, jobs=args.jobs)
    print(f"wrote {len(manifest['clips'])} clips to {args.out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
