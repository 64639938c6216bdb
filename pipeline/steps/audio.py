"""``audio``: decode a source's audio once, to 16 kHz mono, aligned to its video and loudness-normalised.

* Decoding: one ffmpeg pass (soxr resampler, channels averaged), float32, whatever the source
  format (AAC, 24-bit PCM, 44.1/48 kHz, stereo).
* Alignment: sample 0 of the decoded stream sits at ``audio_start`` on the container clock; the
  video timeline starts at ``video_start``. Their difference (``offset_s``) places the audio on the
  video timeline, and the span where *both* exist is what the segment step may cut clips from.
  A source whose audio and video lengths differ (v04: 6.577 s vs 6.633 s) therefore loses the
  unmatched tail instead of getting padded silence or frozen frames.
* Loudness: integrated loudness (ITU-R BS.1770, pyloudnorm) of the aligned span, one linear gain
  to ``target_lufs`` for the whole source (so clips of a source keep their relative level), reduced
  if needed to keep the sample peak under ``peak_dbfs``.

Output: ``files["audio_npy"]`` (float32, the whole decoded stream after gain) and ``meta["audio"]``.
Drops: ``no_audio`` when the stream decodes to nothing or never overlaps the video.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.clip import NO_AUDIO, UNREADABLE, Clip, Drop
from pipeline.media import MediaError, decode_audio
from pipeline.steps import Resources, Step


@dataclass(frozen=True)
class AudioParams:
    """``steps.audio``."""

    sample_rate: int = 16000
    target_lufs: float = -23.0  # EBU R128 programme loudness
    peak_dbfs: float = -1.0  # the gain is lowered so no sample exceeds this
    max_gain_db: float = 30.0  # near-silent sources are not blown up into noise


class DecodeAudio(Step):
    name = "audio"
    version = "2"
    resources = Resources(cpus=1)

    def __init__(self, params: AudioParams | None = None):
        super().__init__(params or AudioParams())

    def __call__(self, clip: Clip, out: Path) -> Clip | Drop:
        p = self.params
        probe = clip.meta["probe"]
        try:
            x = decode_audio(clip.source, p.sample_rate, channels=int(probe["audio_channels"]) or None)
        except MediaError as e:
            return Drop(UNREADABLE, str(e))
        if x.size == 0:
            return Drop(NO_AUDIO, f"{clip.source_rel}: the audio stream decodes to no samples")
        offset = float(probe["audio_start"]) - float(probe["video_start"])
        video_len = float(probe["video_end"]) - float(probe["video_start"])
        audio_len = x.size / p.sample_rate
        span_start, span_end = max(0.0, offset), min(video_len, offset + audio_len)
        if span_end <= span_start:
            return Drop(NO_AUDIO, f"{clip.source_rel}: audio ({offset:.2f}..{offset + audio_len:.2f} s) never overlaps the video (0..{video_len:.2f} s)")

        a = int(round((span_start - offset) * p.sample_rate))
        b = int(round((span_end - offset) * p.sample_rate))
        loudness = _integrated_loudness(x[a:b], p.sample_rate)
        peak = float(np.max(np.abs(x[a:b]))) if b > a else 0.0
        if math.isfinite(loudness):
            gain_db = min(p.target_lufs - loudness, p.max_gain_db)
        else:
            gain_db = 0.0  # digital silence: nothing to normalise
        limited = False
        if peak > 0 and 20 * math.log10(peak) + gain_db > p.peak_dbfs:
            gain_db = p.peak_dbfs - 20 * math.log10(peak)
            limited = True
        y = (x * np.float32(10 ** (gain_db / 20))).astype(np.float32)
        path = out / "audio.npy"
        np.save(path, y)
        meta = {
            "sample_rate": p.sample_rate,
            "samples": int(y.size),
            "offset_s": round(offset, 6),
            "audio_len_s": round(audio_len, 6),
            "video_len_s": round(video_len, 6),
            "span_start_s": round(span_start, 6),
            "span_end_s": round(span_end, 6),
            "loudness_lufs": round(loudness, 3) if math.isfinite(loudness) else None,
            "gain_db": round(gain_db, 3),
            "peak_limited": limited,
            "target_lufs": p.target_lufs,
        }
        return clip.evolve(meta={"audio": meta}, files={"audio_npy": str(path)})


def _integrated_loudness(x: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness in LUFS; ``-inf`` for silence or audio shorter than one 400 ms block."""
    import pyloudnorm

    if x.size < int(0.4 * sample_rate) + 1 or not np.any(x):
        return float("-inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns on clipping; the peak limiter handles it
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x.astype(np.float64)))
