"""The diffusion objective (DESIGN 6): DDPM noising from SD 1.5's ``scheduler/`` config, one timestep
per video, epsilon or v targets (zero-terminal-SNR rescale optional), min-SNR-gamma per sample before
the mean, noise offset, and the x0 estimate the auxiliary losses decode.

The noise schedule is read from the SD folder's ``scheduler/scheduler_config.json`` (the betas of SD
1.5, whatever sampler class it names) into a ``DDPMScheduler`` with this run's ``prediction_type``,
``rescale_betas_zero_snr`` and ``timestep_spacing``; :func:`save_scheduler` writes that config into
each checkpoint so inference builds its DDIM sampler from the same switch (``DDIMScheduler.from_config``).

Per-sample randomness (timestep, noise, offset noise, CFG drops, first-clip and motion-source draws)
comes from one generator per sample seeded by ``(seed, step, micro-batch, global sample index)``
(:func:`sample_generators`): the draws do not depend on how a global batch is split over ranks or on
where a run was resumed, so N ranks of batch b equal one process of batch N x b, and a resumed run
repeats the uninterrupted one.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.losses import diffusion_loss, diffusion_target

from .params import TrainParams

SCHEDULER_CONFIG = "scheduler/scheduler_config.json"


def noise_scheduler(sd_folder: Path | str, train: TrainParams):
    """A ``DDPMScheduler`` with the SD folder's noise schedule and this run's objective switches."""
    from diffusers import DDPMScheduler

    path = Path(sd_folder) / SCHEDULER_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the SD 1.5 folder needs its scheduler/ (the training noise schedule)")
    config = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    config.update(prediction_type=train.prediction_type, rescale_betas_zero_snr=train.zero_terminal_snr,
                  timestep_spacing=train.timestep_spacing, clip_sample=False)
    keep = set(inspect.signature(DDPMScheduler.__init__).parameters)
    return DDPMScheduler.from_config({k: v for k, v in config.items() if k in keep})


def save_scheduler(scheduler: Any, folder: Path) -> None:
    """The run's scheduler config, for the sampler at inference (``DDIMScheduler.from_config``)."""
    scheduler.save_pretrained(str(folder))


def sample_generators(seed: int, step: int, micro: int, first_index: int, count: int) -> list[torch.Generator]:
    """One CPU generator per sample: global indices ``first_index .. first_index + count - 1``."""
    out = []
    for i in range(first_index, first_index + count):
        state = np.random.SeedSequence([seed, step, micro, i]).generate_state(2, dtype=np.uint32)
        out.append(torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1])))
    return out


class Draws:
    """The per-sample random draws of one micro-batch, in a fixed order per sample (every draw is
    made whether the stage uses it or not, so the stream never depends on the configuration)."""

    def __init__(self, generators: list[torch.Generator], latent_shape: tuple[int, ...], num_timesteps: int,
                 conditioning: Any):
        from model.conditioning import drop_masks

        self.timesteps, noise, offset, self.uniform, masks = [], [], [], [], []
        for g in generators:
            self.timesteps.append(torch.randint(0, num_timesteps, (1,), generator=g))
            noise.append(torch.randn(latent_shape, generator=g))
            offset.append(torch.randn(latent_shape[0], generator=g))
            masks.append(drop_masks(1, conditioning, g))
            self.uniform.append(torch.rand(4, generator=g))  # [first clip, motion source, spare, spare]
        self.generators = generators
        self.timesteps = torch.cat(self.timesteps)
        self.noise = torch.stack(noise)
        self.offset = torch.stack(offset)
        self.uniform = torch.stack(self.uniform)
        self.drop = {k: torch.cat([m[k] for m in masks]) for k in masks[0]}

    def first_clip(self, probability: float) -> torch.Tensor:
        return self.uniform[:, 0] < probability

    def use_a2m(self, source: str, probability: float) -> torch.Tensor:
        if source == "gt":
            return torch.zeros(len(self.uniform), dtype=torch.bool)
        if source == "a2m":
            return torch.ones(len(self.uniform), dtype=torch.bool)
        return self.uniform[:, 1] < probability


def noised(scheduler: Any, latents: torch.Tensor, draws: Draws, noise_offset: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(noisy latents, noise, timesteps)``: one timestep per video; noise offset adds a per-sample,
    per-channel constant (``noise_offset * N(0, 1)``) over frames and pixels."""
    noise = draws.noise.to(latents.device, latents.dtype)
    if noise_offset:
        view = draws.offset.reshape(*draws.offset.shape, *([1] * (latents.ndim - 2)))
        noise = noise + noise_offset * view.to(latents.device, latents.dtype)
    timesteps = draws.timesteps.to(latents.device)
    return scheduler.add_noise(latents, noise, timesteps), noise, timesteps


def loss(scheduler: Any, prediction: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
         train: TrainParams) -> torch.Tensor:
    """Per-sample diffusion loss ``(B,)``, min-SNR-gamma weighted when set (before any mean)."""
    alphas = scheduler.alphas_cumprod.to(latents.device)
    target = diffusion_target(latents, noise, timesteps, alphas, train.prediction_type)
    return diffusion_loss(prediction, target, timesteps, alphas, train.prediction_type, train.min_snr_gamma, reduction="none")


def predicted_x0(scheduler: Any, prediction: torch.Tensor, noisy: torch.Tensor, timesteps: torch.Tensor,
                 prediction_type: str) -> torch.Tensor:
    """The clean latents implied by the model output (for the auxiliary losses)."""
    abar = scheduler.alphas_cumprod.to(noisy.device)[timesteps].float()
    view = (-1, *([1] * (noisy.ndim - 1)))
    a, s = abar.sqrt().reshape(view), (1 - abar).sqrt().reshape(view)
    if prediction_type == "epsilon":
        return (noisy - s * prediction) / a.clamp(min=1e-4)
    return a * noisy - s * prediction
