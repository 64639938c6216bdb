"""``audio``: decode a source's audio once, to 16 kHz mono, aligned to its video and loudness-normalised.

* Decoding: one ffmpeg pass (soxr resampler, channels averaged), float32, whatever the source
  format (AAC, 24-bit PCM, 44.1/48 kHz, stereo).
* Alignment: sample 0 of the decoded stream sits at ``audio_start`` on the container clock; the
  video timeline starts at ``video_start``. Their difference (``offset_s``) places the audio on the
  video timeline, and the span where *both* exist is what the segment step may cut clips from.
  A source whose audio and video lengths differ (v04: 6.577 s vs 6.633 s) therefore loses the
  unmatched tail instead of getting padded silence or frozen frames.
* Loudness: integrated loudness (ITU-R BS.1770-4 K-weighting and gating, measured by pyloudnorm) of
  the aligned span, one linear gain to ``target_lufs`` for the whole source (so clips of a source
  keep their relative level), reduced if needed to keep the sample peak under ``peak_dbfs``.

* Time ranges: a record listed with ``meta["range"]`` (seconds on the video timeline) decodes only
  that part (input seeking, ``-ss``/``-t`` before ``-i``): sample 0 then sits at the range start (or
  where the audio begins, if later), the span is clipped to the range and the loudness is the range's.

Output: ``files["audio_npy"]`` (float32, the whole decoded stream after gain) and ``meta["audio"]``.
Drops: ``no_audio`` when the stream decodes to nothing or never overlaps the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.clip import NO_AUDIO, UNREADABLE, Clip, Drop
from core.media import MediaError, not_the_files_fault, decode_audio
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

    def setup(self) -> None:
        # pyloudnorm imports scipy.signal (~1.2 CPU-s once per worker): here it counts as the step's
        # worker start-up (``startup_s`` in the run record), not as the first clip's compute.
        import pyloudnorm  # noqa: F401

    def __call__(self, clip: Clip, out: Path) -> Clip | Drop:
        p = self.params
        probe = clip.meta["probe"]
        span = clip.meta.get("range")
        cut = {}
        if span:  # seek on the container clock (ffmpeg's -ss counts from the format start time)
            cut = {"seek": float(probe["video_start"]) - float(probe.get("format_start", 0.0)) + float(span["start"]),
                   "duration": float(span["end"]) - float(span["start"])}
        try:
            x = decode_audio(clip.source, p.sample_rate, channels=int(probe["audio_channels"]) or None, **cut)
        except MediaError as e:
            if not_the_files_fault(e, clip.source):
                raise
            return Drop(UNREADABLE, str(e))
        if x.size == 0:
            return Drop(NO_AUDIO, f"{clip.source_rel}: the audio stream decodes to no samples")
        offset = float(probe["audio_start"]) - float(probe["video_start"])
        if span:
            offset = max(offset, float(span["start"]))
        video_len = float(probe["video_end"]) - float(probe["video_start"])
        audio_len = x.size / p.sample_rate
        span_start, span_end = max(0.0, offset), min(video_len, offset + audio_len)
        if span:
            span_start, span_end = max(span_start, float(span["start"])), min(span_end, float(span["end"]))
        if span_end <= span_start:
            return Drop(NO_AUDIO, f"{clip.source_rel}: audio ({offset:.2f}..{offset + audio_len:.2f} s) never overlaps the video (0..{video_len:.2f} s)")

        a = int(round((span_start - offset) * p.sample_rate))
        b = int(round((span_end - offset) * p.sample_rate))
        loudness = integrated_loudness(x[a:b], p.sample_rate)
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


def integrated_loudness(x: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness in LUFS of a mono signal ``(n,)``; ``-inf`` for silence or audio shorter
    than one 400 ms block.

    pyloudnorm is imported by the step's ``setup()`` in the worker that runs it: its scipy.signal import
    costs about 1.2 CPU-s once per process, after which a call takes ~7 ms per 10 s of 16 kHz audio
    (the numpy K-weighting it replaced took 34-40 ms). A meter is built per
    call (4 us; a kept one is no faster). The signal is measured in float64, as pyloudnorm filters in
    the input's dtype."""
    if x.size < int(0.4 * sample_rate) + 1 or not np.any(x):
        return float("-inf")
    import pyloudnorm

    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x.astype(np.float64)))
