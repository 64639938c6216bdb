"""``emotion_speech``: speech emotion recognition on 50%-overlapping windows, E_ser of eq. 1 (section 3.6).

The speech emotion judge (:mod:`judges.speech_emotion`: a transformers audio classifier from a
local folder, default superb/hubert-large-superb-er: HuBERT, classes neu/hap/ang/sad from
``config.id2label``) runs on the clip's music-free track (the vocals track when
``features.vocals`` is enabled) cut into windows of ``window_s`` with hop ``window_s / 2``
(:mod:`pipeline.features._segments` states the edge rule). Each window is normalised by the
feature extractor (``do_normalize``), and gives

* class probabilities, the softmax of the logits, ``(C,)``;
* a pooled embedding ``(H,)``: the input of the model's ``classifier`` layer (for the
  ``*ForSequenceClassification`` audio models, the projected hidden states mean-pooled over
  time, H = ``classifier_proj_size``), which the judge captures without changing the model's forward.

Values: ``{"classes", "window_s", "hop_s", "segments": [{"start", "end"}], "probs" (clip: mean of
the windows), "frames", "audio"}``. Files: ``probs.npy`` float32 ``(K, C)``, ``embed.npy`` float16
``(K, H)``, ``frames.npy`` float32 ``(frames, C)`` (per video frame, the mean of the windows
covering its centre).

Batching: windows of a long clip are all ``window_s`` long, so the windows of a batch of clips go
through the model in groups of equal length (``segment_batch`` at most), without padding; a clip
shorter than one window is one shorter window and runs in its own group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.clip import Clip
from core.shards import Member
from judges import speech_emotion
from judges.speech_emotion import SAMPLE_RATE
from pipeline.features import torch_device
from pipeline.features._audio import WindowExtractor, WindowParams
from pipeline.features._segments import clip_segments

WEIGHTS = (speech_emotion.SPEC,)


#: the features this one may read (its ``needs``): their code is part of its DVC stage
READS = ("vocals",)
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (
    Member("probs.npy", "float32", ("segments", "classes"), "speech-emotion probabilities per 50%-overlap window"),
    Member("embed.npy", "float16", ("segments", "hidden"), "pooled SER hidden state per window"),
    Member("frames.npy", "float32", ("frames", "classes"), "per-frame probabilities (mean of the windows covering the frame)",
           sample="speech_emotion", window="mean"),
)


@dataclass(frozen=True)
class Params(WindowParams):
    """``features.emotion_speech``: the window keys of :class:`WindowParams`."""


class Extractor(WindowExtractor):
    name = "emotion_speech"
    version = "1"
    weights = WEIGHTS

    def setup(self) -> None:
        p: Params = self.params
        self.device = torch_device(p.device)
        self.judge = speech_emotion.load(Path(self.folders[speech_emotion.SPEC.name]), self.device)
        self.classes = self.judge.classes

    def forward(self, windows: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(probs ``(C,)``, pooled ``(H,)``) per window (equal lengths: no padding)."""
        out = self.judge.predict(windows)
        probs = out.probs.cpu().numpy()
        pooled = out.embedding.float().cpu().numpy()
        return list(zip(probs, pooled))

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        p: Params = self.params
        results = []
        for clip, out, (which, n, bs, r) in zip(clips, outs, self.track_windows(clips)):
            probs = np.stack([pr for pr, _ in r])
            embed = np.stack([e for _, e in r])
            times, frames, per_frame = clip_segments(bs, probs, clip.meta.get("encode", {}), n, SAMPLE_RATE)
            np.save(out / "probs.npy", probs.astype(np.float32))
            np.save(out / "embed.npy", embed.astype(np.float16))
            np.save(out / "frames.npy", per_frame)
            values = {"classes": self.classes, "window_s": p.window_s, "hop_s": p.window_s / 2, "segments": times,
                      "probs": [round(float(v), 6) for v in probs.mean(axis=0)], "frames": frames, "audio": which}
            results.append(clip.evolve(files={f"emotion_speech.{n}.npy": str(out / f"{n}.npy") for n in ("probs", "embed", "frames")},
                                       meta={"emotion_speech": values}))
        return results
