"""CLIP image: the vision tower of openai/clip-vit-large-patch14 with its projection (image embeddings).

Model: ``openai/clip-vit-large-patch14`` (MIT), loaded as ``CLIPVisionModelWithProjection`` +
``CLIPImageProcessor`` (transformers' PIL backend, ``CLIPImageProcessorPil``, pinned: the
torchvision backend resizes differently and torchvision is not installable here). The published
folder is the FULL CLIP checkpoint: ``config.json`` a ``CLIPConfig`` (the vision tower reads its
``vision_config``: hidden 1024, 24 layers, 16 heads, patch 14, image 224, projection 768,
quick_gelu) and ``model.safetensors`` with both towers; :func:`load` takes the ``vision_model.*`` and
``visual_projection.weight`` tensors and requires ALL of them (strict: ``from_pretrained`` would
silently initialise a missing tensor at random), ignoring only the text tower's
(:data:`TEXT_KEYS`). The tiny stand-in has the same layout: a seeded tiny ``CLIPModel`` (both towers)
and a processor with a 32 px size, each ``save_pretrained``.

Input: RGB images.

* :meth:`ClipImageJudge.encode` (no grad; extraction and metrics): ``(H, W, 3)`` uint8 arrays (or
  PIL images), through the folder's processor: resize the SHORT side to ``size["shortest_edge"]``
  (224; long side ``int(224 * long / short)``) with PIL bicubic (``resample=3``, antialiased) on
  uint8, centre-crop ``crop_size`` (224 x 224; offset ``(h - 224) // 2``), ``/ 255``, normalise with
  the CLIP mean (0.4815, 0.4578, 0.4082) and std (0.2686, 0.2613, 0.2758).
* :meth:`ClipImageJudge.forward` (keeps the graph, for losses): ``(N, 3, H, W)`` float RGB in
  [0, 1] (VAE-decoded frames in [-1, 1]: pass ``(x + 1) / 2``), through :meth:`preprocess`, the same
  steps in torch: ``F.interpolate(mode="bicubic", antialias=True)`` (close to PIL's antialiased
  bicubic), clamp to [0, 1] (PIL's uint8 saturation), the same crop and normalisation; no uint8
  rounding, so it differs from the processor by about 0.01-0.02 in normalised units (checked on
  real images).

Output :class:`ClipImage`: ``embeds`` ``(N, P)`` the projected image embeddings (``image_embeds``;
P = 768 for ViT-L/14, 16 for the tiny stand-in), float32, L2-normalised when ``normalize=True``.

Used by: the attr-action loss (eq. 5 in its trainable form, DESIGN 6: ``1 - cos`` of the CLIP image
embeddings of decoded vs ground-truth frames: :meth:`ClipImageJudge.forward` on the generated
frames, ``encode`` or ``forward`` on the ground truth); the reference image's CLIP path of the
paper's figure 2a (frozen CLIP on the reference image into the cross-attention, as AnimateAnyone /
Hallo feed ``image_embeds``): the ``clip_image`` feature's row of the reference frame
(:meth:`ClipImageJudge.encode`, L2-normalised), ``reference_image_embed`` of the training samples,
through ``model.image_proj``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.weights import ModelSpec
from judges import freeze, verify

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["FILES", "REPO", "SPEC", "TEXT_KEYS", "ClipImage", "ClipImageJudge", "load", "make_tiny_clip_image"]

REPO = "openai/clip-vit-large-patch14"
FILES = ("config.json", "preprocessor_config.json", "model.safetensors")
#: prefixes of the text tower's tensors in a full CLIP checkpoint (not read by the vision tower)
TEXT_KEYS = ("text_model.", "text_projection.", "logit_scale")


def make_tiny_clip_image(folder: Path, seed: int) -> None:
    """A seeded tiny ``CLIPModel`` (vision: 32 px, patch 8, width 32, 2 layers; projection 16) and a
    ``CLIPImageProcessor`` at 32 px, saved with ``save_pretrained`` as the published full-CLIP folder is."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    config = CLIPConfig(
        text_config={"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 77, "projection_dim": 16, "pad_token_id": 1, "bos_token_id": 62, "eos_token_id": 63},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 8,
                       "image_size": 32, "projection_dim": 16},
        projection_dim=16, architectures=["CLIPModel"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


SPEC = ModelSpec(
    "clip-vit-large-patch14", files=FILES, make_tiny=make_tiny_clip_image, repo_id=REPO,
    # pinned hub commit; source: public code pinning openai/clip-vit-large-patch14@<this> (several independent
    # repositories, e.g. model-revision manifests and a Dockerfile fetching model.safetensors at it)
    revision="32bd64288804d66eefd0ccbe215aa642df71cc41",
    licence="MIT",
)


@dataclass(frozen=True)
class ClipImage:
    """``embeds`` ``(N, P)`` projected CLIP image embeddings (L2-normalised when asked)."""

    embeds: torch.Tensor


class ClipImageJudge:
    """The frozen CLIP vision tower with its processor (see the module docstring for conventions)."""

    def __init__(self, model: Any, processor: Any, device: torch.device):
        self.model = model
        self.processor = processor
        self.device = device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` float RGB in [0, 1] -> ``(N, 3, crop, crop)`` pixel values, differentiable:
        the processor's resize (short side, bicubic, antialiased), centre crop and normalisation in torch."""
        import torch
        import torch.nn.functional as F

        p = self.processor
        x = images.to(self.device, torch.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) RGB images, got {tuple(x.shape)}")
        if p.do_resize:
            h, w = x.shape[-2:]
            if p.size.shortest_edge:
                short, long = min(h, w), max(h, w)
                new_long = int(p.size.shortest_edge * long / short)
                size = (p.size.shortest_edge, new_long) if h <= w else (new_long, p.size.shortest_edge)
            else:
                size = (p.size.height, p.size.width)
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)
        if p.do_center_crop:
            h, w = x.shape[-2:]
            ch, cw = p.crop_size.height, p.crop_size.width
            if ch > h or cw > w:
                raise ValueError(f"a {h}x{w} image is smaller than the {ch}x{cw} crop")
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top:top + ch, left:left + cw]
        if p.do_normalize:
            mean = torch.tensor(p.image_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            std = torch.tensor(p.image_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x

    def embed(self, pixel_values: torch.Tensor, normalize: bool = False) -> ClipImage:
        """Preprocessed ``(N, 3, crop, crop)`` pixel values -> :class:`ClipImage` (keeps the graph)."""
        import torch.nn.functional as F

        embeds = self.model(pixel_values=pixel_values.to(self.device)).image_embeds
        return ClipImage(embeds=F.normalize(embeds, dim=-1) if normalize else embeds)

    def forward(self, images: torch.Tensor, normalize: bool = False) -> ClipImage:
        """``(N, 3, H, W)`` float RGB in [0, 1] -> :class:`ClipImage`, differentiable w.r.t. ``images``."""
        return self.embed(self.preprocess(images), normalize=normalize)

    __call__ = forward

    def encode(self, images: Sequence[np.ndarray | Any], normalize: bool = False) -> ClipImage:
        """``(H, W, 3)`` uint8 RGB arrays or PIL images -> :class:`ClipImage` through the folder's
        processor, under ``torch.inference_mode``: the extraction / metric / reference-image path."""
        import torch

        pixel_values = self.processor(images=list(images), return_tensors="pt").pixel_values
        with torch.inference_mode():
            return self.embed(pixel_values, normalize=normalize)


def load(folder: str | Path, device: str | torch.device = "cpu") -> ClipImageJudge:
    """The frozen judge from a verified :data:`SPEC` folder; every vision-tower tensor must be in the
    checkpoint (``ValueError`` naming the missing, mismatched or unknown ones; text-tower keys are ignored)."""
    import torch
    from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

    folder = verify(SPEC, folder)
    device = torch.device(device)
    processor = CLIPImageProcessorPil.from_pretrained(str(folder), local_files_only=True)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists every text-tower key; the check below is ours
    try:
        model, info = CLIPVisionModelWithProjection.from_pretrained(str(folder), local_files_only=True, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    problems = {
        "missing": list(info.get("missing_keys", ())),
        "mismatched": [str(k) for k in info.get("mismatched_keys", ())],
        "unexpected": [k for k in info.get("unexpected_keys", ()) if not k.startswith(TEXT_KEYS)],
        "errors": list(info.get("error_msgs", ())),
    }
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        detail = "; ".join(f"{k}: {', '.join(sorted(v)[:8])}{' ...' if len(v) > 8 else ''}" for k, v in problems.items())
        raise ValueError(f"{folder}/model.safetensors does not hold the CLIP vision tower exactly ({detail})")
    return ClipImageJudge(freeze(model.to(device)), processor, device)
