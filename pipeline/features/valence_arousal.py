"""``valence_arousal``: wav2vec2 valence/arousal/dominance on 50%-overlapping windows, E_va of eq. 1.

Paper section 3.6 and eq. 3: the music-free track (the vocals track when ``features.vocals`` is
enabled) is cut into windows of ``window_s`` with 50% overlap (:mod:`pipeline.features._segments`
states the edge rule) and each window goes through the dimensional emotion model of Wagner et
al. (audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim, CC-BY-NC-SA-4.0: research only).

That checkpoint is not a stock transformers class: :class:`Wav2Vec2ForEmotionRegression` is its
head as published on the model card, a ``Wav2Vec2PreTrainedModel`` with ``wav2vec2`` (the
encoder) and ``classifier`` (:class:`RegressionHead`: dropout -> dense -> tanh -> dropout ->
out_proj) over the time-mean of the last hidden states, so the published state dict
(``wav2vec2.*``, ``classifier.dense.*``, ``classifier.out_proj.*``) loads with
``from_pretrained``. Its outputs follow ``config.id2label`` (arousal, dominance, valence for the
published model, each roughly in [0, 1]); the feature reorders them to :data:`DIMS`. The class is
pure (no pipeline state) so the emo loss (eq. 3) and the CCC metrics can import it.

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
import torch
from torch import nn
from transformers import (
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    Wav2Vec2PreTrainedModel,
)

from core.clip import Clip
from core.shards import Member
from core.weights import ModelSpec
from pipeline.features import torch_device
from pipeline.features._audio import WindowExtractor, WindowParams
from pipeline.features._segments import clip_segments

SAMPLE_RATE = 16000
#: the order of the feature's outputs (the model's own order is its config.id2label)
DIMS = ("valence", "arousal", "dominance")
#: the published model's id2label
MODEL_LABELS = ("arousal", "dominance", "valence")


class RegressionHead(nn.Module):
    """dropout -> dense (H -> H) -> tanh -> dropout -> out_proj (H -> num_labels), on pooled states ``(B, H)``."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.final_dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = self.dropout(pooled)
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


def mean_pool(hidden: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, T, H)`` -> ``(B, H)``: mean over time (over the unmasked frames when a mask is given)."""
    if frame_mask is None:
        return hidden.mean(dim=1)
    m = frame_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class Wav2Vec2ForEmotionRegression(Wav2Vec2PreTrainedModel):
    """Dimensional emotion regression (Wagner et al.): waveform ``(B, samples)`` -> (pooled ``(B, H)``,
    predictions ``(B, num_labels)`` in ``config.id2label`` order). Differentiable (eq. 3)."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        self.wav2vec2 = Wav2Vec2Model(config)
        self.classifier = RegressionHead(config)
        self.post_init()

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.wav2vec2(input_values, attention_mask=attention_mask).last_hidden_state
        frame_mask = None
        if attention_mask is not None:  # padded batch: pool over each input's own frames only
            frame_mask = self.wav2vec2._get_feature_vector_attention_mask(hidden.shape[1], attention_mask)
        pooled = mean_pool(hidden, frame_mask)
        return pooled, self.classifier(pooled)


def make_tiny_va(folder: Path, seed: int) -> None:
    """A tiny :class:`Wav2Vec2ForEmotionRegression` (layer-norm encoder as in wav2vec2-large-robust,
    the published label order), saved as the published folder is (config + ``pytorch_model.bin``)."""
    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                            do_stable_layer_norm=True, final_dropout=0.1, vocab_size=32,
                            id2label=dict(enumerate(MODEL_LABELS)), label2id={c: i for i, c in enumerate(MODEL_LABELS)},
                            architectures=["Wav2Vec2ForSpeechClassification"])
    model = Wav2Vec2ForEmotionRegression(config)
    config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True, sampling_rate=SAMPLE_RATE).save_pretrained(folder)


WEIGHTS = (ModelSpec(
    "wav2vec2-large-robust-12-ft-emotion-msp-dim", files=("config.json", "preprocessor_config.json", "pytorch_model.bin"),
    make_tiny=make_tiny_va, repo_id="audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim",
    revision="",  # pin the revision you fetch (fetch writes it to the manifest)
    licence="CC-BY-NC-SA-4.0",
),)


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
        from transformers import AutoFeatureExtractor

        p: Params = self.params
        self.device = torch_device(p.device)
        folder = Path(self.folders["wav2vec2-large-robust-12-ft-emotion-msp-dim"])
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
        self.model = Wav2Vec2ForEmotionRegression.from_pretrained(folder).to(self.device).eval()
        labels = [str(self.model.config.id2label[i]).lower() for i in range(self.model.config.num_labels)]
        if sorted(labels) != sorted(DIMS):
            raise ValueError(f"{folder}/config.json: id2label {labels} is not {list(DIMS)} in some order")
        self.order = [labels.index(d) for d in DIMS]

    def forward(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """``(3,)`` (valence, arousal, dominance) per window (equal lengths: no padding)."""
        inputs = self.feature_extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.no_grad():
            _, preds = self.model(inputs.input_values.to(self.device))
        return list(preds.float().cpu().numpy()[:, self.order])

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
