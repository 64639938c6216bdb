"""``speech``: voice activity with the real Silero VAD model shipped in the ``silero-vad`` package.

Per clip: speech probabilities every 32 ms (512 samples at 16 kHz), the speech segments found by
Silero's own hysteresis (``get_speech_timestamps_from_probs``), and the speech ratio (speech time
over clip time). Scores: ``speech_ratio`` and ``speech_max_prob``; ``select`` drops
``no_speech`` on the ratio. The model is real in every weights profile (it ships inside the
package), so this score tells talking clips from music-only clips even with tiny stand-ins.

By default the score is computed on the clip's original track (``audio: original``): it is then
independent of the separation model and real under ``weights.profile: tiny``. ``audio: auto``
reads the vocals track when ``features.vocals`` is enabled. Either way the sidecar records which.

Batching: the clips of a batch run through the recurrent model together, one row per clip
(zero-padded to the longest; each clip's probabilities are cut to its own length). Rows are
independent, so a clip's result does not depend on its batch-mates (checked: < 1e-6).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from core.clip import Clip
from core.shards import Member
from pipeline.features import Extractor as _Extractor
from pipeline.features import FeatureParams
from pipeline.features._audio import audio_source, read_mono

WEIGHTS = ()  # bundled: silero_vad/data/silero_vad.jit inside the installed package
SAMPLE_RATE = 16000
#: the reason code ``select`` gives a clip whose ``speech_ratio`` is below its threshold
REASON = "no_speech"
WINDOW = 512


#: the features this one may read (its ``needs``): their code is part of its DVC stage
READS = ("vocals",)  # with audio: auto
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS: tuple[Member, ...] = ()  # values only (segments, ratio) in the json


@dataclass(frozen=True)
class Params(FeatureParams):
    audio: Literal["original", "auto"] = "original"  # auto: the vocals track when features.vocals is enabled
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 100
    speech_pad_ms: int = 30
    batch_size: int = 16


def model_file() -> Path:
    from importlib import resources

    return Path(str(resources.files("silero_vad.data").joinpath("silero_vad.jit")))


class Extractor(_Extractor):
    name = "speech"
    reads = ("files.wav",)
    version = "1"
    weights = WEIGHTS

    def __init__(self, params: Params, weights_params: Any, root: Path = Path("."), features: Any = None):
        super().__init__(params, weights_params, root, features)
        self.needs = ("vocals",) if params.audio == "auto" and "vocals" in self.enabled_features else ()
        from importlib.metadata import version

        self._model_sha = hashlib.sha256(model_file().read_bytes()).hexdigest()
        self._weights_fp = f"silero_vad.jit={self._model_sha}"
        self._package = f"silero-vad {version('silero-vad')}"

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["weights"] = {"silero_vad": self._model_sha[:16], "package": self._package}
        out["audio"] = "vocals" if self.needs else "original"
        return out

    def setup(self) -> None:
        import torch
        from silero_vad import load_silero_vad

        self.torch = torch
        self.model = load_silero_vad()

    def probabilities(self, signals: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Speech probability per 512-sample window of each signal (one batched pass)."""
        chunks = [-(-len(s) // WINDOW) for s in signals]
        x = np.zeros((len(signals), max(chunks) * WINDOW), np.float32)
        for i, s in enumerate(signals):
            x[i, : len(s)] = s
        xt = self.torch.from_numpy(x)
        self.model.reset_states()
        with self.torch.no_grad():
            probs = self.torch.cat([self.model(xt[:, k : k + WINDOW], SAMPLE_RATE) for k in range(0, x.shape[1], WINDOW)], dim=1)
        probs = probs.numpy()
        return [probs[i, :n] for i, n in enumerate(chunks)]

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        p: Params = self.params
        sources = [audio_source(c, bool(self.needs)) for c in clips]
        signals = [read_mono(path, SAMPLE_RATE) for _, path in sources]
        results = []
        for clip, (which, _), signal, probs in zip(clips, sources, signals, self.probabilities(signals)):
            stamps = get_speech_timestamps_from_probs(
                [float(v) for v in probs], sampling_rate=SAMPLE_RATE, threshold=p.threshold,
                min_speech_duration_ms=p.min_speech_ms, min_silence_duration_ms=p.min_silence_ms,
                speech_pad_ms=p.speech_pad_ms, audio_length_samples=len(signal),
            ) if len(signal) else []
            segments = [[round(t["start"] / SAMPLE_RATE, 3), round(t["end"] / SAMPLE_RATE, 3)] for t in stamps]
            speech = sum(t["end"] - t["start"] for t in stamps)
            ratio = speech / len(signal) if len(signal) else 0.0
            values = {"ratio": round(ratio, 6), "segments": segments, "seconds": round(speech / SAMPLE_RATE, 3),
                      "max_prob": round(float(probs.max()) if len(probs) else 0.0, 6),
                      "mean_prob": round(float(probs.mean()) if len(probs) else 0.0, 6), "audio": which}
            results.append(clip.evolve(meta={"speech": values},
                                       scores={"speech_ratio": values["ratio"], "speech_max_prob": values["max_prob"]}))
        return results
