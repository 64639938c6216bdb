"""CLIP text: the SD 1.5 text encoder (CLIP ViT-L/14 text tower) with its tokenizer.

Loads ``text_encoder/`` (``CLIPTextModel``) and ``tokenizer/`` (``CLIPTokenizer``) of the SD 1.5
folder (:data:`SPEC` is :func:`core.sd15.weights_spec`: the same folder the network starts from;
only those two subfolders are read and verified here).

Input: a batch of ``N`` strings. Tokenisation: CLIP BPE with ``<|startoftext|> ... <|endoftext|>``,
padded (``max_length``) or truncated to :data:`TOKENS` = 77 tokens, as SD 1.5 conditions on text.

Output :class:`ClipText`: ``states`` ``(N, 77, D)`` the encoder's last hidden states (model dtype,
float32 as loaded; D = 768 for SD 1.5, 32 for the tiny stand-in) and ``input_ids`` ``(N, 77)`` int64.

Used by: ``pipeline.features.caption`` (``text_states`` of a caption: the ReferenceNet's text
context); the model's own copy of the text encoder is loaded by ``model.builder`` with the rest of
SD 1.5. :meth:`ClipTextJudge.forward` keeps the graph (tokens are discrete: use it when the encoder
output feeds a loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.sd15 import weights_spec
from judges import freeze, verify

if TYPE_CHECKING:
    import torch

__all__ = ["FILES", "SPEC", "TOKENS", "ClipText", "ClipTextJudge", "load"]

TOKENS = 77  # the SD 1.5 text encoder's context length
SPEC = weights_spec()
#: the files of the SD 1.5 folder this judge reads
FILES = ("text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt")


@dataclass(frozen=True)
class ClipText:
    """``states`` ``(N, 77, D)`` last hidden states; ``input_ids`` ``(N, 77)`` the tokens they encode."""

    states: torch.Tensor
    input_ids: torch.Tensor


class ClipTextJudge:
    """The frozen CLIP text encoder with its tokenizer (see the module docstring for conventions)."""

    def __init__(self, text_encoder: Any, tokenizer: Any, device: torch.device):
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.device = device

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, 77)`` token ids: padded or truncated to :data:`TOKENS`."""
        return self.tokenizer(list(texts), padding="max_length", max_length=TOKENS, truncation=True, return_tensors="pt").input_ids

    def forward(self, input_ids: torch.Tensor) -> ClipText:
        """``(N, 77)`` token ids -> :class:`ClipText`, keeping the graph."""
        input_ids = input_ids.to(self.device)
        return ClipText(states=self.text_encoder(input_ids=input_ids).last_hidden_state, input_ids=input_ids)

    __call__ = forward

    def encode(self, texts: Sequence[str]) -> ClipText:
        """Strings -> :class:`ClipText` under ``torch.inference_mode``: the extraction path."""
        import torch

        input_ids = self.tokenize(texts).to(self.device)
        with torch.inference_mode():
            states = self.text_encoder(input_ids=input_ids).last_hidden_state
        return ClipText(states=states, input_ids=input_ids)


def load(folder: str | Path, device: str | torch.device = "cpu") -> ClipTextJudge:
    """The frozen judge from the ``text_encoder/`` and ``tokenizer/`` of an SD 1.5 folder (verified first)."""
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = verify(SPEC, folder, FILES)
    device = torch.device(device)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    text_encoder = freeze(CLIPTextModel.from_pretrained(str(folder / "text_encoder"), local_files_only=True).to(device))
    return ClipTextJudge(text_encoder, tokenizer, device)
