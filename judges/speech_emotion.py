"""Speech emotion recognition (SER): a transformers audio classifier, HuBERT by default.

Model: superb/hubert-large-superb-er (Apache-2.0), loaded as ``AutoModelForAudioClassification`` +
``AutoFeatureExtractor`` from a local folder, so any transformers audio classifier folder works.
Classes come from ``config.id2label`` (neu, hap, ang, sad for the published model: :data:`CLASSES`).

Input: mono waveforms at 16 kHz (:data:`SAMPLE_RATE`), float in [-1, 1], ``(B, S)`` samples (the
pipeline feeds 2 s windows, S = 32000). Each input is normalised to zero mean and unit variance
(``do_normalize`` of the folder's feature extractor): :meth:`SpeechEmotionJudge.predict` with the
feature extractor (numpy; the extraction path), :meth:`SpeechEmotionJudge.forward` with its
differentiable twin :func:`judges._audio.zero_mean_unit_var`.

Output :class:`SpeechEmotion`:

* ``logits`` ``(B, C)`` (model dtype);
* ``probs`` ``(B, C)`` float64: the softmax of the logits in double precision, rows sum to 1;
* ``embedding`` ``(B, H)``: the input of the model's ``classifier`` layer (for the
  ``*ForSequenceClassification`` audio models, the projected hidden states mean-pooled over time,
  H = ``classifier_proj_size``: 256 published, 16 tiny), captured with a forward pre-hook so the
  model's own forward runs unchanged.

Used by: ``pipeline.features.emotion_speech`` (E_ser of eq. 1 on 50%-overlapping windows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.weights import ModelSpec
from judges import freeze, verify
from judges._audio import SAMPLE_RATE, zero_mean_unit_var

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["CLASSES", "SAMPLE_RATE", "SPEC", "SpeechEmotion", "SpeechEmotionJudge", "load", "make_tiny_hubert_er"]

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


SPEC = ModelSpec(
    "hubert-large-superb-er", files=("config.json", "preprocessor_config.json", "pytorch_model.bin"),
    make_tiny=make_tiny_hubert_er, repo_id="superb/hubert-large-superb-er",
    # pinned hub commit; source: the hub-cache snapshot folder models--superb--hubert-large-superb-er/snapshots/<this>
    # loaded by public code (one repository only: weaker than the other pins)
    revision="ef1a2ebfd7cfc424dc7f0fbcdc406e8b794d63bb",
    licence="Apache-2.0",
)


@dataclass(frozen=True)
class SpeechEmotion:
    """``logits`` ``(B, C)``, ``probs`` ``(B, C)`` float64 (softmax), ``embedding`` ``(B, H)`` pooled hidden state."""

    logits: torch.Tensor
    probs: torch.Tensor
    embedding: torch.Tensor


class SpeechEmotionJudge:
    """The frozen SER classifier with its feature extractor (see the module docstring for conventions)."""

    def __init__(self, model: Any, feature_extractor: Any, device: torch.device):
        self.model = model
        self.feature_extractor = feature_extractor
        self.device = device
        id2label = model.config.id2label
        self.classes = [str(id2label[i]) for i in range(len(id2label))]
        self._pooled: list[Any] = []
        # the classifier's input is the pooled embedding; a pre-hook reads it without changing forward
        model.classifier.register_forward_pre_hook(lambda _m, args: self._pooled.append(args[0]))

    def _run(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SpeechEmotion:
        import torch

        self._pooled.clear()
        logits = self.model(input_values, attention_mask=attention_mask).logits
        embedding = self._pooled[-1]
        self._pooled.clear()
        return SpeechEmotion(logits=logits, probs=torch.softmax(logits.double(), dim=-1), embedding=embedding)

    def forward(self, waveforms: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SpeechEmotion:
        """``(B, S)`` 16 kHz waveforms (padded rows marked by ``attention_mask``) -> :class:`SpeechEmotion`,
        differentiable w.r.t. ``waveforms`` (normalised here in torch when the folder says ``do_normalize``)."""
        x = waveforms.to(self.device)
        mask = attention_mask.to(self.device) if attention_mask is not None else None
        if getattr(self.feature_extractor, "do_normalize", False):
            x = zero_mean_unit_var(x, mask)
        return self._run(x, mask)

    __call__ = forward

    def predict(self, windows: Sequence[np.ndarray]) -> SpeechEmotion:
        """Equal-length float32 numpy windows at 16 kHz -> :class:`SpeechEmotion` (no padding, no grad),
        preprocessed by the folder's feature extractor: the extraction path."""
        import torch

        inputs = self.feature_extractor(list(windows), sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.no_grad():
            return self._run(inputs.input_values.to(self.device))


def load(folder: str | Path, device: str | torch.device = "cpu") -> SpeechEmotionJudge:
    """The frozen judge from a verified :data:`SPEC` folder (any transformers audio classifier folder)."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    folder = verify(SPEC, folder)
    device = torch.device(device)
    feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
    model = freeze(AutoModelForAudioClassification.from_pretrained(folder).to(device))
    return SpeechEmotionJudge(model, feature_extractor, device)
