"""``clip_image``: the CLIP image embedding of every frame of the clip (the attr-action-loss target, eq. 5).

The paper's attr-action loss compares VideoLLaMA2 captions of generated and real videos; captions are
discrete and carry no gradient, so the trainable form (DESIGN 6) is 1 - cos between CLIP image
embeddings of generated and ground-truth frames. This feature computes the ground truth's once per
clip with the ``clip_image`` judge (:mod:`judges.clip_image`: openai/clip-vit-large-patch14's vision
tower with its projection) on the clip's whole 512x512 face-crop frames (attributes include hair,
clothing and accessories, so the frame is not cropped further), through the folder's processor.

Files: ``frames.npy`` ``(frames, P)`` float16 L2-normalised projected embeddings (P = 768; 16 for the
tiny stand-in), the ``clip_image`` entry of training samples. Values: the mean cosine similarity of
consecutive judged frames (how much the picture changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.clip import Clip
from core.shards import Member
from judges import clip_image
from pipeline.features import torch_device
from pipeline.features._frames import FrameExtractor, FrameParams

WEIGHTS = (clip_image.SPEC,)
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (
    Member("frames.npy", "float16", ("frames", "embed"), "L2-normalised CLIP image embedding of each whole frame",
           sample="clip_image", window="frames"),
)


@dataclass(frozen=True)
class Params(FrameParams):
    frame_batch: int = 16


class Extractor(FrameExtractor):
    name = "clip_image"
    version = "1"
    weights = WEIGHTS

    def setup(self) -> None:
        self.judge = clip_image.load(Path(self.folders[clip_image.SPEC.name]), torch_device(self.params.device))

    def judge_frames(self, frames: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
        return {"embeds": self.judge.encode(list(frames), normalize=True).embeds.float().cpu().numpy()}

    def summarise(self, clip: Clip, arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, float], dict[str, np.ndarray]]:
        emb = arrays["embeds"].astype(np.float32)
        steady = float((emb[1:] * emb[:-1]).sum(axis=1).mean()) if len(emb) > 1 else 1.0
        return {"dim": int(emb.shape[1]), "consecutive_cosine": steady}, {}, {"frames.npy": emb.astype(np.float16)}
