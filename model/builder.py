"""Build every SynchroRaMa component from a local SD 1.5 weights folder (paper section 4).

"Both networks are initialized with weights from the original Stable Diffusion model": the
4-attention DenoisingUNet and the ReferenceNet start from ``unet/``; the VAE, CLIP text encoder and
tokenizer are used as they are (frozen). The base UNet is read once. The folder layout is
:mod:`core.sd15`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.sd15 import verify_sd15_folder


@dataclass
class SD15Components:
    """What ``load_sd15`` returns: the trainable backbone copies and the frozen SD 1.5 parts."""

    unet: Any  # model.unet.DenoisingUNet
    reference_net: Any  # model.reference_net.ReferenceNet
    vae: Any  # diffusers.AutoencoderKL
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any  # transformers.CLIPTokenizer


def load_sd15(folder: str | Path, unet_kwargs: dict[str, Any] | None = None) -> SD15Components:
    """Load every SD 1.5-initialised component from a local folder (never from the network).

    ``unet_kwargs`` are the DenoisingUNet's own init arguments (``audio_dim``, ``emotion_dim``).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from model.reference_net import ReferenceNet
    from model.unet import DenoisingUNet

    root = verify_sd15_folder(folder)
    base = UNet2DConditionModel.from_pretrained(str(root / "unet"), local_files_only=True)
    unet = DenoisingUNet.from_base(base, **(unet_kwargs or {}))
    reference_net = ReferenceNet.from_base(base)
    del base
    vae = AutoencoderKL.from_pretrained(str(root / "vae"), local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(str(root / "text_encoder"), local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True)
    return SD15Components(unet=unet, reference_net=reference_net, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)


