"""What one training step computes for each stage: the trained networks under one module (what DDP
wraps) and the losses of a micro-batch.

- ``stage1``: the target frame's latent ``(B, C, 1, h, w)`` is noised; the ReferenceNet (trained)
  encodes the reference and motion-frame latents with the caption (+ the reference image's CLIP tokens
  of the trained ImageProjection, figure 2a); the DenoisingUNet (spatial part trained) predicts the
  noise (or v).
- ``stage2``: the 14-frame window's latents ``(B, C, T, h, w)``; the ReferenceNet is frozen (no
  graph); the audio projection, emotion embedding and the UNet's temporal/audio/emotion modules train.
  Motion frames: ground truth, the frozen A2M's (``motion_source``), and with ``first_clip_probability``
  the first-clip case: no previous frames, so the reference latent repeated M times (``gt``) or the
  A2M's motion frames from the reference and the window's first frame's audio repeated M times (``a2m``).
- ``a2m``: reconstruction + KL of the motion-frame latents (``model.losses.a2m_vae_loss``), the KL
  weight annealed linearly over ``kl_anneal_steps``.

The VAE (and the caption null) are frozen and stay outside the wrapped module; all frames are
encoded without a graph (posterior means), or read from the latent cache (``data.latents: cached``:
``latents``, ``motion_latents``, ``reference_latents`` in the batch, the VAE encoder never runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model.conditioning import ConditioningParams, build_conditions, encode_latents, fixed_masks
from model.losses import a2m_vae_loss

from . import aux as aux_losses
from . import objective
from .params import TrainParams

#: the networks each stage wraps (trained ones, plus the frozen ReferenceNet and ImageProjection of stage 2);
#: ``image_proj`` only when ``model.image_proj.enabled``
NETWORKS = {"stage1": ("unet", "reference_net", "image_proj"),
            "stage2": ("unet", "reference_net", "audio_proj", "emotion_embed", "image_proj"), "a2m": ("a2m",)}
#: the networks each stage trains and saves
TRAINED = {"stage1": ("unet", "reference_net", "image_proj"), "stage2": ("unet", "audio_proj", "emotion_embed"), "a2m": ("a2m",)}


class StageModel(nn.Module):
    """The networks of one stage; ``forward`` is the part of the step that builds the graph."""

    def __init__(self, stage: str, nets: dict[str, nn.Module]):
        super().__init__()
        self.stage = stage
        self.nets = nn.ModuleDict(nets)

    def forward(self, inputs: dict[str, Any]) -> Any:
        if self.stage == "a2m":
            out = self.nets["a2m"](inputs["motion_latents"], inputs["reference_latents"], inputs["audio"], noise=inputs["noise"])
            return out.to_tuple()  # (sample, mean, log_std, z_q, z_p): plain tensors for DDP and autocast's fp32 cast
        nets = self.nets
        conds = build_conditions(inputs["batch"], null_text_states=inputs["null_text_states"], drop=inputs["drop"],
                                 reference_latents=inputs["reference_latents"], motion_latents=inputs["motion_latents"],
                                 audio_proj=nets["audio_proj"] if "audio_proj" in nets else None,
                                 emotion_embed=nets["emotion_embed"] if "emotion_embed" in nets else None,
                                 image_proj=nets["image_proj"] if "image_proj" in nets else None)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.stage == "stage1"):
            features = nets["reference_net"](**conds.reference_net_inputs()).features
        return nets["unet"](inputs["noisy"], inputs["timesteps"], **conds.unet_inputs(features)).sample


@dataclass
class Frozen:
    """What a step needs besides the wrapped module."""

    vae: Any
    scheduler: Any  # DDPMScheduler (stage 1 and 2)
    null_text_states: torch.Tensor | None
    conditioning: ConditioningParams
    a2m: Any = None  # frozen A2M for stage-2 motion frames
    audio_context: int = 0
    aux: list | None = None
    aux_decoder: Any = None  # the auxiliary losses' decoder (train.aux.decoder; None: the VAE)


def _latents(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    return encode_latents(vae, pixels).float()


#: the latent cache (``data.latents: cached``): batch entry of cached latents -> the pixel entry it replaces
CACHED = {"reference_latents": "reference", "motion_latents": "motion_frames", "latents": "frames"}


def _encoded(frozen: Frozen, batch: dict[str, Any], name: str) -> torch.Tensor:
    """The latents of ``reference`` ``(B, C, h, w)``, ``motion_frames`` / ``frames`` / ``target`` ``(B, C, N, h, w)``:
    the cached ones when the batch carries them (no VAE), else the VAE's."""
    cached = next((k for k, v in CACHED.items() if v == name), "latents" if name == "target" else None)
    if cached in batch:
        latents = batch[cached].float()
        return latents if latents.ndim == 4 else latents.transpose(1, 2)  # (B, N, C, h, w) -> (B, C, N, h, w)
    pixels = batch[name][:, None] if name == "target" else batch[name]
    return _latents(frozen.vae, pixels)


def latent_shape(stage: str, vae: Any, batch: dict[str, Any], a2m_config: Any = None) -> tuple[int, ...]:
    """The per-sample shape of the noise the stage draws (diffusion latents, or the A2M's z)."""
    channels = vae.config.latent_channels
    if "reference_latents" in batch:  # the latent cache
        size = batch["reference_latents"].shape[-1]
    else:
        size = batch["reference"].shape[-1] // (2 ** (len(vae.config.block_out_channels) - 1))
    if stage == "a2m":
        down = 2 ** a2m_config.num_downsamples
        return (a2m_config.z_channels, size // down, size // down)
    frames = 1 if stage == "stage1" else (batch["latents"] if "latents" in batch else batch["frames"]).shape[1]
    return (channels, frames, size, size)


def _motion(stage: str, frozen: Frozen, batch: dict[str, Any], reference: torch.Tensor, draws: objective.Draws,
            train: TrainParams) -> torch.Tensor | None:
    motion = batch.get("motion_latents", batch.get("motion_frames"))
    if motion is None or motion.shape[1] == 0:
        return None
    latents = _encoded(frozen, batch, "motion_frames")
    m = latents.shape[2]
    first = draws.first_clip(train.first_clip_probability)
    use_a2m = draws.use_a2m(train.motion_source, train.a2m_probability) if stage == "stage2" else torch.zeros_like(first)
    for b in range(latents.shape[0]):
        if use_a2m[b]:
            c = frozen.audio_context
            rows = torch.full((m,), c) if first[b] else torch.arange(c - m, c)
            audio = batch["audio_embed"][b:b + 1, rows].to(reference.device, next(frozen.a2m.parameters()).dtype)
            seed = int(torch.randint(2**62, (1,), generator=draws.generators[b]))  # the prior's draw, on the A2M's device
            generator = torch.Generator(reference.device).manual_seed(seed)
            latents[b] = frozen.a2m.generate(reference[b:b + 1].to(audio.dtype), audio, generator=generator)[0].float()
        elif first[b]:
            latents[b] = reference[b][:, None].expand(-1, m, -1, -1)
    return latents


def compute(stage: str, model: nn.Module, frozen: Frozen, batch: dict[str, Any], draws: objective.Draws,
            train: TrainParams, step: int) -> dict[str, torch.Tensor]:
    """The micro-batch's losses: ``loss`` (the total to backpropagate) and each term."""
    reference = _encoded(frozen, batch, "reference")
    if stage == "a2m":
        motion = _latents(frozen.vae, batch["motion_frames"])
        out = model({"motion_latents": motion, "reference_latents": reference, "noise": draws.noise.to(reference.device),
                     "audio": batch["audio_embed"].to(reference.device)})
        ramp = min(1.0, step / train.kl_anneal_steps) if train.kl_anneal_steps else 1.0
        sample, mean, log_std, z_q, z_p = (x.float() for x in out)
        terms = a2m_vae_loss(sample, motion, mean, log_std, z_q, z_p, kl_weight=train.kl_weight * ramp)
        return {"loss": terms.total, "loss/reconstruction": terms.reconstruction, "loss/kl": terms.kl,
                "kl_weight": torch.tensor(train.kl_weight * ramp)}
    latents = _encoded(frozen, batch, "target" if stage == "stage1" else "frames").to(reference.device)
    noisy, noise, timesteps = objective.noised(frozen.scheduler, latents, draws, train.noise_offset)
    inputs = {"noisy": noisy, "timesteps": timesteps, "batch": batch, "drop": draws.drop, "reference_latents": reference,
              "motion_latents": _motion(stage, frozen, batch, reference, draws, train),
              "null_text_states": frozen.null_text_states}
    prediction = model(inputs)
    diffusion = objective.loss(frozen.scheduler, prediction.float(), latents, noise, timesteps, train).mean()
    out = {"loss": diffusion, "loss/diffusion": diffusion}
    if frozen.aux:
        x0 = objective.predicted_x0(frozen.scheduler, prediction.float(), noisy, timesteps, train.prediction_type)
        terms = aux_losses.compute(frozen.aux, frozen.aux_decoder or frozen.vae, x0, timesteps, batch, train.aux, draws.uniform[:, 2])
        for a in frozen.aux:
            out[f"loss/{a.name}"] = terms[a.name]
            out["loss"] = out["loss"] + a.weight * terms[a.name]
    return out


def validation_draws(draws: objective.Draws) -> objective.Draws:
    """Validation: nothing dropped, no first-clip case, ground-truth motion frames."""
    draws.drop = fixed_masks(len(draws.uniform))
    draws.uniform[:, :2] = 1.0
    return draws
