"""``emotion_text``: text emotion of the clip's transcript, E_t of eq. 1 (paper section 3.6).

Reads the ``transcript`` feature (run through the per-clip cache, so Whisper runs once per clip
whichever stage asks first) and classifies its text with the text emotion judge
(:mod:`judges.text_emotion`: a RoBERTa sequence classifier + tokenizer from a local folder; the
paper's is j-hartmann/emotion-english-distilroberta-base). Class names come from the model's
``config.id2label``. Probabilities are the softmax of the logits, for the whole text (clip) and
for each transcript segment. Texts longer than the model's positions are truncated.

Empty transcript (no speech, or every segment empty): the classifier is run on the empty string
(just ``<s></s>``), which is the model's own answer for "no words"; ``"empty": true`` says so.
Segments without text are not classified and take the clip probabilities.

Values::

    {"classes": [C names], "probs": [C] (clip), "segments": [{"start", "end", "text", "probs"}],
     "frames", "empty", "audio"}

File ``frames.npy``: ``(frames, C)`` float32, per video frame the probabilities of the transcript
segment covering the frame centre (mean if several), the clip probabilities where none does
(:func:`pipeline.features._segments.frame_values`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.clip import Clip
from core.shards import Member
from judges import text_emotion
from pipeline.features import Extractor as _Extractor
from pipeline.features import FeatureParams, torch_device
from pipeline.features._segments import frame_values

WEIGHTS = (text_emotion.SPEC,)


#: the features this one may read (its ``needs``): their code is part of its DVC stage
READS = ("transcript", "vocals")
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (Member("frames.npy", "float32", ("frames", "classes"), "per-frame text-emotion probabilities of the transcript",
                  sample="text_emotion", window="mean"),)


@dataclass(frozen=True)
class Params(FeatureParams):
    batch_size: int = 8  # clips per call (their clip and segment texts go through the model together)
    max_tokens: int = 512  # truncation length (capped by the model's position embeddings)
    device: str = "auto"  # auto (cuda when visible) | cpu | cuda


class Extractor(_Extractor):
    name = "emotion_text"
    reads = ("meta.encode.frames", "meta.encode.fps")  # and the transcript (``needs``)
    version = "1"
    weights = WEIGHTS

    def __init__(self, params: Params, weights_params: Any, root: Path = Path("."), features: Any = None):
        super().__init__(params, weights_params, root, features)
        # transcript reads the vocals track when vocals is enabled: computed first, then transcript
        self.needs = (("vocals",) if "vocals" in self.enabled_features else ()) + ("transcript",)

    def setup(self) -> None:
        p: Params = self.params
        self.device = torch_device(p.device)
        self.judge = text_emotion.load(Path(self.folders[text_emotion.SPEC.name]), self.device)
        self.classes = self.judge.classes
        self.max_tokens = min(p.max_tokens, self.judge.max_tokens)

    def classify(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), C)`` class probabilities (softmax), float64."""
        if not texts:
            return np.zeros((0, len(self.classes)))
        return self.judge.predict(texts, self.max_tokens).probs.cpu().numpy()

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        transcripts = []
        for c in clips:
            if "transcript" not in c.meta:
                raise KeyError(f"{c.key}: no transcript values; emotion_text needs the transcript feature")
            transcripts.append(c.meta["transcript"])
        # one forward pass for every clip text and every non-empty segment text of the batch
        texts: list[str] = []
        index: list[tuple[int, int]] = []  # (clip, segment or -1 for the clip text)
        for i, t in enumerate(transcripts):
            texts.append(t.get("text", "").strip())
            index.append((i, -1))
            for j, s in enumerate(t.get("segments", [])):
                if s.get("text", "").strip():
                    texts.append(s["text"].strip())
                    index.append((i, j))
        probs = self.classify(texts)
        by_clip: dict[tuple[int, int], np.ndarray] = dict(zip(index, probs))
        results = []
        for i, (clip, out, t) in enumerate(zip(clips, outs, transcripts)):
            clip_probs = by_clip[(i, -1)]
            frames = int(t.get("frames") or clip.meta.get("encode", {}).get("frames"))
            segments, seg_probs = [], []
            for j, s in enumerate(t.get("segments", [])):
                sp = by_clip.get((i, j), clip_probs)
                segments.append({"start": s["start"], "end": s["end"], "text": s["text"], "probs": [round(float(v), 6) for v in sp]})
                seg_probs.append(sp)
            per_frame = frame_values([s["start"] for s in segments], [s["end"] for s in segments],
                                     np.array(seg_probs).reshape(len(segments), len(self.classes)), frames, clip.meta.get("encode", {}).get("fps", 25),
                                     fill=clip_probs)
            np.save(out / "frames.npy", per_frame.astype(np.float32))
            values = {"classes": self.classes, "probs": [round(float(v), 6) for v in clip_probs], "segments": segments,
                      "frames": frames, "empty": not t.get("text", "").strip(), "audio": t.get("audio", "")}
            results.append(clip.evolve(files={"emotion_text.frames.npy": str(out / "frames.npy")}, meta={"emotion_text": values}))
        return results
