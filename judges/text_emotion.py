"""Text emotion: a RoBERTa sequence classifier (j-hartmann/emotion-english-distilroberta-base).

Loaded as ``AutoModelForSequenceClassification`` + ``AutoTokenizer`` from a local folder; class
names come from ``config.id2label`` (:data:`CLASSES` for the published model, 7 classes).

Input: a batch of ``N`` strings (English, any length). Tokenisation: the folder's byte-level BPE
tokenizer with ``<s> ... </s>``, padded to the longest text of the batch and truncated to
``max_tokens`` (at most :attr:`TextEmotionJudge.max_tokens` = ``max_position_embeddings - 2`` =
512 for RoBERTa). The empty string is ``<s></s>``: the model's own answer for "no words".

Output :class:`TextEmotion`: ``logits`` ``(N, C)`` (model dtype) and ``probs`` ``(N, C)`` float64,
the softmax of the logits in double precision (rows sum to 1).

Used by: ``pipeline.features.emotion_text`` (E_t of eq. 1, on the transcript and its segments).
:meth:`TextEmotionJudge.forward` takes token ids or ``inputs_embeds`` and keeps the graph (text is
discrete: gradients can reach embeddings, not strings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.tiny import byte_level_vocab, write_bpe
from core.weights import ModelSpec
from judges import freeze, verify

if TYPE_CHECKING:
    import torch

__all__ = ["CLASSES", "SPEC", "TextEmotion", "TextEmotionJudge", "load", "make_tiny_roberta_classifier"]

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


SPEC = ModelSpec(
    "emotion-english-distilroberta-base",
    files=("config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "pytorch_model.bin"),
    make_tiny=make_tiny_roberta_classifier, repo_id="j-hartmann/emotion-english-distilroberta-base",
    # pinned hub commit; source: public code pinning j-hartmann/emotion-english-distilroberta-base at it (revision
    # constants in several repositories, and hub-cache snapshot folders of that name)
    revision="0e1cd914e3d46199ed785853e12b57304e04178b",
    licence="see the model card (cite Hartmann 2022)",
)


@dataclass(frozen=True)
class TextEmotion:
    """``logits`` ``(N, C)`` and ``probs`` ``(N, C)`` float64 (softmax), in ``classes`` order."""

    logits: torch.Tensor
    probs: torch.Tensor


class TextEmotionJudge:
    """The frozen text classifier with its tokenizer (see the module docstring for conventions)."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        id2label = model.config.id2label
        self.classes = [str(id2label[i]) for i in range(len(id2label))]
        #: the longest input the position embeddings allow (RoBERTa reserves 2 positions)
        self.max_tokens = int(model.config.max_position_embeddings) - 2

    def tokenize(self, texts: Sequence[str], max_tokens: int | None = None) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` ``(N, L)``: padded to the longest, truncated to ``max_tokens``."""
        limit = self.max_tokens if max_tokens is None else max_tokens
        return dict(self.tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt"))

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> TextEmotion:
        """Token ids (or ``inputs_embeds`` ``(N, L, hidden)``) -> :class:`TextEmotion`, keeping the graph."""
        import torch

        def dev(t: Any) -> Any:
            return t.to(self.device) if t is not None else None

        logits = self.model(input_ids=dev(input_ids), attention_mask=dev(attention_mask), inputs_embeds=dev(inputs_embeds)).logits
        return TextEmotion(logits=logits, probs=torch.softmax(logits.double(), dim=-1))

    __call__ = forward

    def predict(self, texts: Sequence[str], max_tokens: int | None = None) -> TextEmotion:
        """Strings -> :class:`TextEmotion` (no grad): the extraction path. ``N = 0`` gives ``(0, C)``."""
        import torch

        if not texts:
            empty = torch.zeros((0, len(self.classes)), dtype=torch.float64)
            return TextEmotion(logits=empty.float(), probs=empty)
        enc = self.tokenize(texts, max_tokens)
        with torch.no_grad():
            logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits
        return TextEmotion(logits=logits, probs=torch.softmax(logits.double(), dim=-1))


def load(folder: str | Path, device: str | torch.device = "cpu") -> TextEmotionJudge:
    """The frozen judge from a verified :data:`SPEC` folder (any transformers text classifier folder)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = verify(SPEC, folder)
    device = torch.device(device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = freeze(AutoModelForSequenceClassification.from_pretrained(folder).to(device))
    return TextEmotionJudge(model, tokenizer, device)
