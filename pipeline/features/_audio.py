"""Audio helpers shared by the audio extractors: reading a clip's track, resampling, levels."""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf

from pipeline.features import AUDIO_READS, Extractor, FeatureParams
from pipeline.features._segments import run_windows

VOCALS_FILE = "vocals.wav"


def read_mono(path: str, sample_rate: int = 16000) -> np.ndarray:
    """A float32 mono signal at ``sample_rate`` (polyphase resampling when the file differs)."""
    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    return resample(wav.mean(axis=1), sr, sample_rate)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy; no torchaudio)."""
    if sr_in == sr_out:
        return np.ascontiguousarray(x, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g, axis=-1).astype(np.float32)


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level in dBFS (floored at -120 for silence)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return round(20 * np.log10(max(rms, 1e-6)), 3)


def audio_source(clip: Any, use_vocals: bool) -> tuple[str, str]:
    """(``"vocals"`` | ``"original"``, path): the vocals track when it is used and present."""
    if use_vocals:
        if VOCALS_FILE not in clip.files:
            raise KeyError(f"{clip.key}: the vocals track ({VOCALS_FILE}) is missing although features.vocals is enabled")
        return "vocals", clip.files[VOCALS_FILE]
    return "original", clip.files["wav"]


class TrackExtractor(Extractor):
    """An extractor of the clip's audio track: the vocals track when ``features.vocals`` is enabled
    (it then ``needs`` vocals and records ``"audio": "vocals"``), the original track otherwise."""

    reads = AUDIO_READS

    def __init__(self, params: Any, weights_params: Any, root: Path = Path("."), features: Any = None):
        super().__init__(params, weights_params, root, features)
        self.needs = ("vocals",) if "vocals" in self.enabled_features else ()

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "audio": "vocals" if self.needs else "original"}

    def track(self, clip: Any) -> tuple[str, str]:
        """``(which, path)`` of the track this extractor reads for ``clip``."""
        return audio_source(clip, bool(self.needs))


@dataclass(frozen=True)
class WindowParams(FeatureParams):
    """Params of an extractor over 50%-overlapping windows of the track (paper 3.6: E_ser, E_va)."""

    window_s: float = 2.0  # window length; hop = window_s / 2 (50% overlap)
    batch_size: int = 4  # clips per call
    segment_batch: int = 16  # windows per forward pass
    device: str = "auto"  # auto (cuda when visible) | cpu | cuda


class WindowExtractor(TrackExtractor):
    """A track extractor whose model sees each 50%-overlapping window: ``forward(windows)`` gives
    one row per window (equal lengths within a call, so no padding)."""

    sample_rate = 16000

    def forward(self, windows: list[np.ndarray]) -> Sequence[Any]:
        raise NotImplementedError

    def track_windows(self, clips: Sequence[Any]) -> list[tuple[str, int, list[tuple[int, int]], list[Any]]]:
        """Per clip: which track was read, its length in samples, the window bounds and the rows."""
        p: WindowParams = self.params
        sources = [self.track(c) for c in clips]
        signals = [read_mono(path, self.sample_rate) for _, path in sources]
        bounds, rows = run_windows(signals, self.sample_rate, p.window_s, p.segment_batch, self.forward)
        return [(which, len(x), bs, r) for (which, _), x, bs, r in zip(sources, signals, bounds, rows)]
