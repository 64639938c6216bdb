"""The inference pipeline from the training stages' checkpoints (``<checkpoints>/<stage>/step-N/``).

Every component loads with its own ``from_pretrained`` from the newest complete checkpoint of the stage
that trained it (EMA weights when the run kept them, :func:`model.training.checkpoint.weights_folder`):

    stage2  unet (audio, temporal, emotion modules trained on stage 1's), audio_proj, emotion_embed,
            scheduler/ (the run's noise schedule and prediction type -> the DDIM sampler's config)
    stage1  reference_net (and image_proj when the model has the CLIP image path)
    a2m     a2m (optional: without it the first window's motion frames are the reference latent)
    SD 1.5  vae, text_encoder, tokenizer (the folder stage 2 trained with, from its run.json)

The run's ``data`` section (window length T, motion frames M, audio context, frame size) comes back in
:class:`Loaded` so that generation cuts its windows as training did.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import params as params_mod
from core.weights import is_tiny
from model.data import DataParams

from .pipeline import TalkingFacePipeline

log = logging.getLogger("model.inference")


class CheckpointsMissing(FileNotFoundError):
    """A stage needed for generation has no complete checkpoint."""


@dataclass
class Loaded:
    pipeline: TalkingFacePipeline
    data: DataParams
    tiny: bool
    sources: dict[str, str]  # component -> the folder it was loaded from


def _newest(root: Path, stage: str) -> Path:
    from model.training.checkpoint import newest

    found = newest(root / stage)
    if found is None:
        raise CheckpointsMissing(f"{root / stage}: no complete checkpoint (step-N/ with train_state.pt): "
                                 f"run `dvc repro train@{stage}` first")
    return found


def from_checkpoints(root: Path | str = "checkpoints", sd_folder: Path | str | None = None, device: Any = "cpu",
                     dtype: str = "fp32") -> Loaded:
    """The pipeline of the newest stage-1, stage-2 and (if any) A2M checkpoints under ``root``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    from core.sd15 import verify_sd15_folder
    from model.a2m import A2M
    from model.audio_proj import AudioProjection
    from model.emotion_embed import EmotionEmbedding
    from model.reference_net import ReferenceNet
    from model.training.checkpoint import newest, weights_folder
    from model.unet import DenoisingUNet

    root = Path(root)
    s2, s1 = _newest(root, "stage2"), _newest(root, "stage1")
    a2m_dir = newest(root / "a2m")
    run = json.loads((s2 / "run.json").read_text())
    sd = verify_sd15_folder(Path(sd_folder) if sd_folder else Path(run["sd_folder"]))
    sources: dict[str, str] = {}

    def load(cls: Any, ckpt: Path, name: str) -> Any:
        folder = weights_folder(ckpt, name)
        sources[name] = str(folder)
        return cls.from_pretrained(str(folder), local_files_only=True)

    scheduler_dir = s2 / "scheduler"
    if not (scheduler_dir / "scheduler_config.json").is_file():
        raise CheckpointsMissing(f"{scheduler_dir}: no scheduler_config.json (the run's noise schedule)")
    scheduler = DDIMScheduler.from_config(DDIMScheduler.load_config(str(scheduler_dir)))
    sources["scheduler"] = str(scheduler_dir)
    image_proj = None
    if (s1 / "image_proj").is_dir():
        from model.image_proj import ImageProjection  # the CLIP image path of figure 2a

        image_proj = load(ImageProjection, s1, "image_proj")
    pipe = TalkingFacePipeline(
        vae=AutoencoderKL.from_pretrained(str(sd / "vae"), local_files_only=True),
        text_encoder=CLIPTextModel.from_pretrained(str(sd / "text_encoder"), local_files_only=True),
        tokenizer=CLIPTokenizer.from_pretrained(str(sd / "tokenizer"), local_files_only=True),
        unet=load(DenoisingUNet, s2, "unet"), reference_net=load(ReferenceNet, s1, "reference_net"),
        audio_proj=load(AudioProjection, s2, "audio_proj"), emotion_embed=load(EmotionEmbedding, s2, "emotion_embed"),
        scheduler=scheduler, a2m=load(A2M, a2m_dir, "a2m") if a2m_dir is not None else None, image_proj=image_proj)
    sources.update(vae=str(sd / "vae"), text_encoder=str(sd / "text_encoder"))
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    pipe.to(device) if torch_dtype == torch.float32 else pipe.to(device, torch_dtype)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval().requires_grad_(False)
    data = params_mod.from_dict(DataParams, run["data"], where=f"{s2 / 'run.json'}: data")
    tiny = bool(run.get("tiny")) or is_tiny(sd)
    log.info("pipeline from %s (stage 2), %s (stage 1)%s%s", s2, s1, f", {a2m_dir} (A2M)" if a2m_dir else "",
             " [tiny weights]" if tiny else "")
    return Loaded(pipeline=pipe, data=data, tiny=tiny, sources=sources)
