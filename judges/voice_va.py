"""Voice valence/arousal/dominance: the wav2vec2 dimensional emotion regressor of Wagner et al.

Model: audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim (CC-BY-NC-SA-4.0: research only).
It is not a stock transformers class: :class:`Wav2Vec2ForEmotionRegression` is its head as
published on the model card, a ``Wav2Vec2PreTrainedModel`` with ``wav2vec2`` (the encoder) and
``classifier`` (:class:`RegressionHead`: dropout -> dense -> tanh -> dropout -> out_proj) over the
time-mean of the last hidden states, so the published state dict (``wav2vec2.*``,
``classifier.dense.*``, ``classifier.out_proj.*``) loads with ``from_pretrained``. Its outputs
follow ``config.id2label`` (arousal, dominance, valence for the published model, each roughly in
[0, 1]); the judge reorders them to :data:`DIMS`.

Input: mono waveforms at 16 kHz (:data:`SAMPLE_RATE`), float in [-1, 1], ``(B, S)`` samples
(the pipeline feeds 2 s windows, S = 32000; any S of at least 400 samples works). Each input is
normalised to zero mean and unit variance (the folder's ``preprocessor_config.json``,
``do_normalize``), as the model card's processor does: :meth:`VoiceVAJudge.predict` with the
folder's feature extractor (numpy; the extraction path), :meth:`VoiceVAJudge.forward` with its
differentiable twin :func:`judges._audio.zero_mean_unit_var`.

Output :class:`VoiceVA`: ``values (B, 3)`` valence, arousal, dominance (float32, model dtype);
``pooled (B, H)`` the time-mean of the encoder's last hidden states (H = 1024 for the published
model, 32 for the tiny stand-in).

Used by: ``pipeline.features.valence_arousal`` (E_va of eq. 1 on 50%-overlapping windows), the emo
loss of eq. 3 and the CCC metrics (differentiable through :meth:`VoiceVAJudge.forward`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import (
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    Wav2Vec2PreTrainedModel,
)

from core.weights import ModelSpec
from judges import freeze, verify
from judges._audio import SAMPLE_RATE, zero_mean_unit_var

__all__ = [
    "DIMS",
    "MODEL_LABELS",
    "SAMPLE_RATE",
    "SPEC",
    "VoiceVA",
    "VoiceVAJudge",
    "Wav2Vec2ForEmotionRegression",
    "load",
    "make_tiny_va",
]

#: the order of the judge's outputs (the model's own order is its config.id2label)
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


SPEC = ModelSpec(
    "wav2vec2-large-robust-12-ft-emotion-msp-dim", files=("config.json", "preprocessor_config.json", "pytorch_model.bin"),
    make_tiny=make_tiny_va, repo_id="audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim",
    # pinned hub commit; source: public code pinning audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim at it
    # (MODEL_REVISION / DIMENSIONAL_MODEL_REVISION constants and a hub-cache snapshot folder, several repositories)
    revision="6eba34a2485ea31cb03600241787c3a5edab8626",
    licence="CC-BY-NC-SA-4.0",
)


@dataclass(frozen=True)
class VoiceVA:
    """``values`` ``(B, 3)``: valence, arousal, dominance (:data:`DIMS` order); ``pooled`` ``(B, H)``."""

    values: torch.Tensor
    pooled: torch.Tensor

    @property
    def valence(self) -> torch.Tensor:
        return self.values[:, 0]

    @property
    def arousal(self) -> torch.Tensor:
        return self.values[:, 1]


class VoiceVAJudge:
    """The frozen VA regressor with its feature extractor (see the module docstring for conventions)."""

    def __init__(self, model: Wav2Vec2ForEmotionRegression, feature_extractor: Wav2Vec2FeatureExtractor, device: torch.device,
                 order: Sequence[int]):
        self.model = model
        self.feature_extractor = feature_extractor
        self.device = device
        self.order = list(order)  # model output index of each of DIMS

    def forward(self, waveforms: torch.Tensor, attention_mask: torch.Tensor | None = None) -> VoiceVA:
        """``(B, S)`` 16 kHz waveforms (padded rows marked by ``attention_mask``) -> :class:`VoiceVA`,
        differentiable w.r.t. ``waveforms`` (normalised here in torch when the folder says ``do_normalize``)."""
        x = waveforms.to(self.device)
        mask = attention_mask.to(self.device) if attention_mask is not None else None
        if getattr(self.feature_extractor, "do_normalize", False):
            x = zero_mean_unit_var(x, mask)
        pooled, preds = self.model(x, attention_mask=mask)
        return VoiceVA(values=preds[:, self.order], pooled=pooled)

    __call__ = forward

    @torch.no_grad()
    def predict(self, windows: Sequence[np.ndarray]) -> VoiceVA:
        """Equal-length float32 numpy windows at 16 kHz -> :class:`VoiceVA` (no padding, no grad),
        preprocessed by the folder's feature extractor: the extraction path."""
        inputs = self.feature_extractor(list(windows), sampling_rate=SAMPLE_RATE, return_tensors="pt")
        pooled, preds = self.model(inputs.input_values.to(self.device))
        return VoiceVA(values=preds[:, self.order], pooled=pooled)


def load(folder: str | Path, device: str | torch.device = "cpu") -> VoiceVAJudge:
    """The frozen judge from a verified :data:`SPEC` folder; its ``config.id2label`` must name the three :data:`DIMS`."""
    from transformers import AutoFeatureExtractor

    folder = verify(SPEC, folder)
    device = torch.device(device)
    feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
    model = freeze(Wav2Vec2ForEmotionRegression.from_pretrained(folder).to(device))
    labels = [str(model.config.id2label[i]).lower() for i in range(model.config.num_labels)]
    if sorted(labels) != sorted(DIMS):
        raise ValueError(f"{folder}/config.json: id2label {labels} is not {list(DIMS)} in some order")
    return VoiceVAJudge(model, feature_extractor, device, [labels.index(d) for d in DIMS])
