"""``emotion_speech``: speech emotion recognition on 50%-overlapping windows, E_ser of eq. 1 (section 3.6).

A transformers audio classifier (``AutoModelForAudioClassification`` + ``AutoFeatureExtractor``
from a local folder; default superb/hubert-large-superb-er: HuBERT, classes neu/hap/ang/sad from
``config.id2label``) runs on the clip's music-free track (the vocals track when
``features.vocals`` is enabled) cut into windows of ``window_s`` with hop ``window_s / 2``
(:mod:`pipeline.features._segments` states the edge rule). Each window is normalised by the
feature extractor (``do_normalize``), and gives

* class probabilities, the softmax of the logits, ``(C,)``;
* a pooled embedding ``(H,)``: the input of the model's ``classifier`` layer (for the
  ``*ForSequenceClassification`` audio models, the projected hidden states mean-pooled over
  time, H = ``classifier_proj_size``), captured with a forward pre-hook so the model's own
  forward runs unchanged.

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
from core.weights import ModelSpec
from pipeline.features import torch_device
from pipeline.features._audio import WindowExtractor, WindowParams
from pipeline.features._segments import clip_segments

SAMPLE_RATE = 16000
#: the classes of superb/hubert-large-superb-er, in its config's id order
CLASSES = ("neu", "hap", "ang", "sad")


def make_tiny_hubert_er(folder: Path, seed: int) -> None:
    """A tiny ``HubertForSequenceClassification`` (layer-norm feature encoder as in HuBERT-large,
    the real label set), saved as the published folder is (config + ``pytorch_model.bin``)."""
    import torch
    from transformers import (
        HubertConfig,
        HubertForSequenceClassification,
        Wav2Vec2FeatureExtractor,
    )

    torch.manual_seed(seed)
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                          do_stable_layer_norm=True, classifier_proj_size=16, use_weighted_layer_sum=False,
                          id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)},
                          architectures=["HubertForSequenceClassification"])
    model = HubertForSequenceClassification(config)
    config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True, sampling_rate=SAMPLE_RATE).save_pretrained(folder)


WEIGHTS = (ModelSpec(
    "hubert-large-superb-er", files=("config.json", "preprocessor_config.json", "pytorch_model.bin"),
    make_tiny=make_tiny_hubert_er, repo_id="superb/hubert-large-superb-er", revision="",  # pin the revision you fetch
    licence="Apache-2.0",
),)


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
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        p: Params = self.params
        self.torch = torch
        self.device = torch_device(p.device)
        folder = Path(self.folders["hubert-large-superb-er"])
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
        self.model = AutoModelForAudioClassification.from_pretrained(folder).to(self.device).eval()
        id2label = self.model.config.id2label
        self.classes = [str(id2label[i]) for i in range(len(id2label))]
        self._pooled: list[Any] = []
        # the classifier's input is the pooled embedding; a pre-hook reads it without changing forward
        self.model.classifier.register_forward_pre_hook(lambda _m, args: self._pooled.append(args[0].detach()))

    def forward(self, windows: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(probs ``(C,)``, pooled ``(H,)``) per window (equal lengths: no padding)."""
        torch = self.torch
        inputs = self.feature_extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        self._pooled.clear()
        with torch.no_grad():
            logits = self.model(inputs.input_values.to(self.device)).logits
        probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()
        pooled = self._pooled[-1].float().cpu().numpy()
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
