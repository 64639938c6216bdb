"""``valence_arousal``: wav2vec2 valence/arousal/dominance on 50%-overlapping windows, E_va of eq. 1.

Paper section 3.6 and eq. 3: the music-free track (the vocals track when ``features.vocals`` is
enabled) is cut into windows of ``window_s`` with 50% overlap (:mod:`pipeline.features._segments`
states the edge rule) and each window goes through the voice VA judge, :mod:`judges.voice_va`
(the dimensional emotion model of Wagner et al., audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim,
CC-BY-NC-SA-4.0: research only; its head class, input conventions and tiny stand-in live there).

Values: ``{"dims": ["valence", "arousal", "dominance"], "window_s", "hop_s", "segments":
[{"start", "end"}], "frames", "audio"}``. Files: ``segments.npy`` float32 ``(K, 3)``,
``frames.npy`` float32 ``(frames, 3)`` (per video frame, the mean of the windows covering its centre).
Each window is normalised to zero mean and unit variance by the folder's feature extractor
(``do_normalize``), as the model card's processor does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.clip import Clip
from core.shards import Member
from judges import voice_va
from judges.voice_va import DIMS, SAMPLE_RATE
from pipeline.features import torch_device
from pipeline.features._audio import WindowExtractor, WindowParams
from pipeline.features._segments import clip_segments

WEIGHTS = (voice_va.SPEC,)


#: the features this one may read (its ``needs``): their code is part of its DVC stage
READS = ("vocals",)
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (
    Member("segments.npy", "float32", ("segments", 3), "valence, arousal, dominance per 50%-overlap window"),
    Member("frames.npy", "float32", ("frames", 3), "per-frame valence, arousal, dominance",
           sample="valence_arousal", window="frames", columns=2),
)


@dataclass(frozen=True)
class Params(WindowParams):
    """``features.valence_arousal``: the window keys of :class:`WindowParams`."""


class Extractor(WindowExtractor):
    name = "valence_arousal"
    version = "1"
    weights = WEIGHTS

    def setup(self) -> None:
        p: Params = self.params
        self.device = torch_device(p.device)
        self.judge = voice_va.load(Path(self.folders[voice_va.SPEC.name]), self.device)

    def forward(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """``(3,)`` (valence, arousal, dominance) per window (equal lengths: no padding)."""
        return list(self.judge.predict(windows).values.float().cpu().numpy())

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        p: Params = self.params
        results = []
        for clip, out, (which, n, bs, r) in zip(clips, outs, self.track_windows(clips)):
            seg = np.stack(r).astype(np.float32)
            times, frames, per_frame = clip_segments(bs, seg, clip.meta.get("encode", {}), n, SAMPLE_RATE)
            np.save(out / "segments.npy", seg)
            np.save(out / "frames.npy", per_frame)
            values = {"dims": list(DIMS), "window_s": p.window_s, "hop_s": p.window_s / 2, "segments": times, "frames": frames,
                      "audio": which}
            results.append(clip.evolve(files={f"valence_arousal.{n}.npy": str(out / f"{n}.npy") for n in ("segments", "frames")},
                                       meta={"valence_arousal": values}))
        return results
