"""Start-of-run checks (sizes agree across params sections, sidecars and weights) and the run's provenance.

Every mismatch is a :class:`core.params.ParamsError` naming both keys, raised before any training:

- ``model`` vs ``data`` (:func:`model.builder.check_data`: audio context vs the projection's window,
  motion frames vs the A2M), and the A2M's motion source vs the audio window;
- the first batch (what the sidecars' ``members.json`` declare, as the loader cut it) vs ``model``:
  wav2vec2 layers/hidden of ``audio_embed`` vs ``model.audio_proj`` and ``model.a2m``, the emotion class
  counts of ``text_emotion``/``speech_emotion`` vs ``model.emotion_embed``, valence/arousal columns,
  the caption's text-state width vs the UNet's ``cross_attention_dim`` (the SD folder's ``unet/config.json``),
  the reference image's CLIP embedding (``reference_image_embed``) vs ``model.image_proj.in_dim``.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from core.params import ParamsError

from .params import Resolved

PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "dvclive", "numpy", "safetensors")


def _tiny_note(res: Resolved, key: str) -> str:
    return f" (set by train.tiny for weights.profile tiny)" if key in res.tiny_overrides else ""


def check_params(res: Resolved, model: Any, data: Any) -> None:
    from model.builder import check_data

    try:
        check_data(model, data)
    except ValueError as e:
        raise ParamsError(f"params.yaml: {e}") from None
    t = res.train
    if res.stage == "stage1" and t.motion_source != "gt":
        raise ParamsError(f"params.yaml: train.stage1.motion_source ({t.motion_source}) must be gt: stage-1 samples carry no "
                          f"audio for the A2M (data.stage1_features)")
    if res.stage == "stage2" and t.motion_source != "gt":
        if data.motion_frames > data.audio_context:
            raise ParamsError(f"params.yaml: train.stage2.motion_source {t.motion_source} takes the A2M's audio from the "
                              f"window's context rows: data.motion_frames ({data.motion_frames}) must be <= data.audio_context "
                              f"({data.audio_context})")
        if not t.a2m_from:
            raise ParamsError(f"params.yaml: train.stage2.motion_source {t.motion_source} needs train.stage2.a2m_from "
                              f"(the A2M checkpoints folder, e.g. checkpoints/a2m)")
    if res.stage == "stage2" and not t.init_from:
        raise ParamsError("params.yaml: train.stage2.init_from must name the stage-1 checkpoints (e.g. checkpoints/stage1)")


def check_batch(res: Resolved, batch: dict[str, Any], model: Any, cross_attention_dim: int) -> None:
    """The first batch's feature sizes against the ``model`` section (and the UNet's text width)."""
    def need(entry: str, dim: int, got: int, key: str, what: str) -> None:
        if got != dim:
            raise ParamsError(f"params.yaml: {key} ({dim}){_tiny_note(res, key)} must equal {what} of the {entry} sidecar "
                              f"({got}, as data.{'stage1' if res.stage == 'stage1' else 'stage2'}_features reads it); "
                              f"change {key} or re-extract the feature")

    if "audio_embed" in batch and res.stage in ("stage2", "a2m"):
        layers, hidden = batch["audio_embed"].shape[-2:]
        if res.stage == "stage2":
            need("audio_embed", model.audio_proj.num_layers, layers, "model.audio_proj.num_layers", "the wav2vec2 layers")
            need("audio_embed", model.audio_proj.feature_dim, hidden, "model.audio_proj.feature_dim", "the wav2vec2 hidden size")
        need("audio_embed", model.a2m.audio_layers, layers, "model.a2m.audio_layers", "the wav2vec2 layers")
        need("audio_embed", model.a2m.audio_dim, hidden, "model.a2m.audio_dim", "the wav2vec2 hidden size")
    if res.stage == "stage2":
        for entry, key, what in (("text_emotion", "model.emotion_embed.text_dim", "the class count"),
                                 ("speech_emotion", "model.emotion_embed.ser_dim", "the class count"),
                                 ("valence_arousal", "model.emotion_embed.va_dim", "the columns")):
            if entry in batch:
                need(entry.replace("text_emotion", "emotion_text").replace("speech_emotion", "emotion_speech"),
                     getattr(model.emotion_embed, key.rsplit(".", 1)[1]), int(batch[entry].shape[-1]), key, what)
    if res.stage != "a2m" and model.image_proj.enabled:
        if "reference_image_embed" not in batch:
            raise ParamsError(f"params.yaml: model.image_proj.enabled needs the reference image's CLIP embedding in the "
                              f"samples: add clip_image to data.{res.stage}_features (data.reference_image_embed names "
                              f"its entry), or set model.image_proj.enabled: false")
        need("clip_image", model.image_proj.in_dim, int(batch["reference_image_embed"].shape[-1]), "model.image_proj.in_dim",
             "the embedding size")
    if "text_states" in batch and res.stage != "a2m":
        need("caption", cross_attention_dim, int(batch["text_states"].shape[-1]), "unet/config.json cross_attention_dim",
             "the text-state width")


def check_cached_latents(latents: torch.Tensor, vae: Any, size: int) -> None:
    """The latent cache (``data.latents: cached``) holds the VAE's latents of ``data.size`` frames."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    want = (vae.config.latent_channels, size // factor, size // factor)
    if tuple(latents.shape[-3:]) != want:
        raise ParamsError(f"params.yaml: the latents sidecar holds {tuple(latents.shape[-3:])} latents, the VAE gives {want} for "
                          f"data.size {size}: set features.latents.size to data.size ({size}) and re-run extract@latents-<dataset>, "
                          f"or set data.latents: pixels")


def git_commit() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, check=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    dev = {"type": device.type, "world_size": world_size, "cpu": platform.processor() or platform.machine(),
           "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        dev["name"] = torch.cuda.get_device_name(device)
    return {"packages": versions, "python": platform.python_version(), "device": dev}


def write_run(folder: Path, record: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
