"""A model-free test feature: the RMS of each clip's wav, slowly (so a test can kill a run half-way).

The extractor contract without weights: ``Params``, ``MEMBERS`` and an ``Extractor`` whose
``__call__`` writes one float32 ``rms.npy`` (shape ``(1,)``) per clip after ``delay_s`` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from core.shards import Member
from pipeline.features import Extractor as _Extractor
from pipeline.features import FeatureParams

MEMBERS = (Member("npy", "float32", (1,), "RMS of the clip's wav"),)


@dataclass(frozen=True)
class Params(FeatureParams):
    delay_s: float = 0.0  # seconds each clip takes


class Extractor(_Extractor):
    name = "rms"
    reads = ("files.wav",)

    def __call__(self, clip, out):
        time.sleep(self.params.delay_s)
        wav, _ = sf.read(clip.files["wav"], dtype="float32")
        np.save(out / "rms.npy", np.sqrt(np.mean(np.square(wav), keepdims=True)).astype(np.float32).reshape(1))
        return clip.evolve(files={"rms.npy": str(out / "rms.npy")}, scores={"rms_value": float(np.sqrt(np.mean(np.square(wav))))})
