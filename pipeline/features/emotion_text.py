"""``emotion_text``: text emotion of the clip's transcript, E_t of eq. 1 (paper section 3.6).

Reads the ``transcript`` feature (run through the per-clip cache, so Whisper runs once per clip
whichever stage asks first) and classifies its text with a RoBERTa sequence classifier
(``AutoModelForSequenceClassification`` + tokenizer from a local folder; the paper's is
j-hartmann/emotion-english-distilroberta-base). Class names come from the model's
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
from core.tiny import byte_level_vocab, write_bpe
from core.weights import ModelSpec
from pipeline.features import Extractor as _Extractor
from pipeline.features import FeatureParams, torch_device
from pipeline.features._segments import frame_values

#: the classes of emotion-english-distilroberta-base, in its config's id order
CLASSES = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


def make_tiny_roberta_classifier(folder: Path, seed: int) -> None:
    """A tiny ``RobertaForSequenceClassification`` with the real label set and a byte-level BPE
    tokenizer (``vocab.json`` + ``merges.txt``), saved as the published folder is."""
    import torch
    from transformers import (
        AutoTokenizer,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab = {**specials, **{sym: i + len(specials) for sym, i in byte_level_vocab().items()}}
    vocab["<mask>"] = len(vocab)
    write_bpe(folder, vocab, tokenizer_config={"tokenizer_class": "RobertaTokenizer", "model_max_length": 512, "bos_token": "<s>",
                                   "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
                                   "pad_token": "<pad>", "mask_token": "<mask>", "add_prefix_space": False}, final_newline=True)
    AutoTokenizer.from_pretrained(folder)  # the folder must load as written
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)},
                           architectures=["RobertaForSequenceClassification"])
    model = RobertaForSequenceClassification(config)
    config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # the published checkpoint's format


WEIGHTS = (ModelSpec(
    "emotion-english-distilroberta-base",
    files=("config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "pytorch_model.bin"),
    make_tiny=make_tiny_roberta_classifier, repo_id="j-hartmann/emotion-english-distilroberta-base",
    revision="",  # pin the revision you fetch (fetch writes it to the manifest)
    licence="see the model card (cite Hartmann 2022)",
),)


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
    version = "1"
    weights = WEIGHTS

    def __init__(self, params: Params, weights_params: Any, root: Path = Path("."), features: Any = None):
        super().__init__(params, weights_params, root, features)
        # transcript reads the vocals track when vocals is enabled: computed first, then transcript
        self.needs = (("vocals",) if "vocals" in self.enabled_features else ()) + ("transcript",)

    def setup(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        p: Params = self.params
        self.torch = torch
        self.device = torch_device(p.device)
        folder = Path(self.folders["emotion-english-distilroberta-base"])
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).to(self.device).eval()
        id2label = self.model.config.id2label
        self.classes = [str(id2label[i]) for i in range(len(id2label))]
        self.max_tokens = min(p.max_tokens, int(self.model.config.max_position_embeddings) - 2)

    def classify(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), C)`` class probabilities (softmax), float64."""
        if not texts:
            return np.zeros((0, len(self.classes)))
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        with self.torch.no_grad():
            logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits
        return self.torch.softmax(logits.double(), dim=-1).cpu().numpy()

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
