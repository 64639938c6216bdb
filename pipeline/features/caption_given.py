"""``caption`` with a given text: the user's caption of a reference image (``python -m pipeline.prepare --caption``).

The same sidecar as :mod:`pipeline.features.caption` (``text_states.npy`` (77, D) float16 from the SD 1.5
CLIP text encoder, ``sentence.npy`` (S,) float32 all-MiniLM-L6-v2, paper section 3 / eq. 5), computed by
that feature's own text encoders (:meth:`~pipeline.features.caption.Extractor.embed`) from ``text``,
used verbatim, instead of a caption the video-language model generates: no VLM folder is needed or
loaded. Selected for the ``caption`` feature with ``features.caption.module:
pipeline.features.caption_given`` and ``features.caption.text`` (``pipeline.prepare`` does both);
the sidecar json says ``"source": "user"`` and ``"model": {"backend": "given"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from core.clip import Clip
from core.weights import ModelSpec
from judges import clip_text
from pipeline.features import caption
from pipeline.features.caption import MEMBERS  # noqa: F401  (the caption sidecar's members, unchanged)


@dataclass(frozen=True)
class Params(caption.Params):
    text: str = ""  # the caption, used verbatim ("" is the empty caption, the CFG null)


def weights_for(params: Params) -> tuple[ModelSpec, ...]:
    """Only the text encoder's folder: a given caption needs no captioning model."""
    return (clip_text.SPEC,)


WEIGHTS = weights_for(Params())


class Extractor(caption.Extractor):
    name = "caption"  # the sidecar it writes; its params (``text``, ``module``) keep its cache entries apart
    reads = ()  # the given text only: one result for every clip
    version = "1"
    weights = WEIGHTS
    specs = staticmethod(weights_for)

    def setup(self) -> None:
        self.setup_text()

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        text = self.params.text
        states, sentences = self.embed([text])
        values = {"source": "user", "prompt": None, "generation": None, "model": {"backend": "given"}, "frame_times": []}
        return [self.result(clip, out, text, states[0], sentences[0], values) for clip, out in zip(clips, outs)]
