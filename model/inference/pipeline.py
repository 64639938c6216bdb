"""``TalkingFacePipeline``: a reference image + a clip's conditions -> a talking video of any length
(paper section 3, figure 2a; section 4: DDIM with 40 steps).

Long audio is generated in consecutive windows of ``frames_per_clip`` frames (training's
``data.target_frames``, 14 in the paper), chained by motion frames without decoding: the first
window's M motion-frame latents come from the A2M prior (3.5: ``A2M.generate``, never the flow) with
the audio of the window's first frame repeated M times, exactly the first-clip case training draws; each
later window takes the last M latents of the previous one. The reference image's ReferenceNet features
are computed once per guidance branch; only the motion frames' features are recomputed per window
(the ReferenceNet encodes each image independently, so this equals one call on 1 + M images).

Each window's conditions come from :func:`model.conditioning.build_conditions` on a stage-2-like sample
(:meth:`model.data.clips.WholeClip.window`): the same code path as training, with the guidance
branches' drop masks (:mod:`model.inference.guidance`). Shapes: latents ``(1, C, T, h, w)`` per window,
output frames ``(N, S, S, 3)`` uint8 RGB, ``N`` the clip's frame count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from diffusers import DiffusionPipeline

from model.conditioning import build_conditions, empty_text_states, encode_latents

from .guidance import branch_masks, combine
from .params import GuidanceParams, InferenceParams

log = logging.getLogger("model.inference")


class ClipSource(Protocol):
    """What a pipeline generates from (:class:`model.data.clips.WholeClip`)."""

    frames: int
    key: str

    def window(self, start: int, count: int | None = None) -> dict[str, Any]: ...


@dataclass
class Generation:
    """``frames``: ``(N, S, S, 3)`` uint8 RGB; ``latents``: ``(1, C, N, h, w)``; ``first_motion``: a2m | reference."""

    frames: np.ndarray
    latents: torch.Tensor
    first_motion: str
    windows: int


def clip_seed(seed: int, name: str) -> int:
    """The noise seed of one clip: a function of (seed, clip name) only, so a clip gets the same noise
    whichever rank generates it."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)


class TalkingFacePipeline(DiffusionPipeline):
    """Every component of the model (``from_pretrained`` / ``save_pretrained`` as any diffusers pipeline;
    :func:`model.inference.checkpoints.from_checkpoints` assembles one from the training stages)."""

    _optional_components = ["a2m", "image_proj"]

    def __init__(self, vae, text_encoder, tokenizer, unet, reference_net, audio_proj, emotion_embed, scheduler,
                 a2m=None, image_proj=None):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              reference_net=reference_net, audio_proj=audio_proj, emotion_embed=emotion_embed,
                              scheduler=scheduler, a2m=a2m, image_proj=image_proj)

    @property
    def motion_frames(self) -> int:
        return int(self.a2m.config.motion_frames) if self.a2m is not None else 0

    def _param(self) -> torch.nn.Parameter:
        return next(self.unet.parameters())

    @torch.no_grad()
    def null_text_states(self) -> torch.Tensor:
        return empty_text_states(self.text_encoder, self.tokenizer).to(self._param().device)

    @torch.no_grad()
    def __call__(self, source: ClipSource, reference: torch.Tensor, params: InferenceParams | None = None,
                 frames_per_clip: int = 14, motion_frames: int | None = None, seed: int | None = None,
                 decode: bool = True, progress: bool = True, null_text_states: torch.Tensor | None = None) -> Generation:
        """Generate ``source.frames`` frames.

        ``reference``: ``(3, S, S)`` uint8 or [-1, 1] float pixels of the reference image (the clip's
        first frame in the paper's protocol). ``motion_frames``: M (default: the A2M's, else 2).
        ``null_text_states``: the empty caption's states when already computed (the trainer's validation,
        which keeps no text encoder); else from the pipeline's text encoder.
        """
        p = params or InferenceParams()
        device, dtype = self._param().device, self._param().dtype
        m = motion_frames if motion_frames is not None else (self.motion_frames or 2)
        t = frames_per_clip
        n = int(source.frames)
        if n < 1:
            raise ValueError(f"{source.key}: no frame to generate")
        generator = torch.Generator("cpu").manual_seed(clip_seed(p.seed if seed is None else seed, source.key))
        self.scheduler.set_timesteps(p.steps, device=device)
        timesteps = self.scheduler.timesteps
        branches = len(p.guidance.branches())
        drop = branch_masks(p.guidance, 1, device)
        null = (null_text_states if null_text_states is not None else self.null_text_states()).to(device, dtype)
        ref_latent = encode_latents(self.vae, reference[None].to(device)).to(dtype)  # (1, C, h, w)

        first = p.first_motion if (p.first_motion == "reference" or self.a2m is not None) else "reference"
        if p.first_motion == "a2m" and self.a2m is None:
            log.info("%s: no A2M in the pipeline: the first window's motion frames are the reference latent", source.key)
        reference_features: dict[str, torch.Tensor] | None = None
        windows = -(-n // t)
        out_latents = []
        motion: torch.Tensor | None = None
        bar = self.progress_bar(total=windows * len(timesteps)) if progress else None
        for w in range(windows):
            start = w * t
            sample = _batched(source.window(start, t), branches, device)
            if m and motion is None:  # the first window
                if first == "a2m":
                    c = self.audio_proj.config.context_frames
                    audio = sample["audio_embed"][:1, [c] * m].to(dtype)
                    a2m_gen = torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
                    motion = self.a2m.generate(ref_latent.to(next(self.a2m.parameters()).dtype), audio.to(next(self.a2m.parameters()).dtype),
                                               generator=a2m_gen, temperature=p.a2m_temperature).to(dtype)
                else:
                    motion = ref_latent[:, :, None].expand(-1, -1, m, -1, -1)
            kwargs = {"image_proj": self.image_proj} if self.image_proj is not None else {}
            conds = build_conditions(sample, null_text_states=null, drop=drop,
                                     reference_latents=ref_latent.expand(branches, -1, -1, -1),
                                     motion_latents=motion.expand(branches, -1, -1, -1, -1) if m else None,
                                     audio_proj=self.audio_proj, emotion_embed=self.emotion_embed, dtype=dtype, **kwargs)
            if reference_features is None:  # once: the reference image's features of every branch
                reference_features = self.reference_net(conds.reference_latents, conds.text_states).features
            features = reference_features
            if m:
                features = _with_motion(self.reference_net, reference_features, conds.motion_latents, conds.text_states)
            latents = torch.randn((1, ref_latent.shape[1], t, *ref_latent.shape[2:]), generator=generator).to(device, dtype)
            latents = latents * self.scheduler.init_noise_sigma
            inputs = conds.unet_inputs(features)
            for step in timesteps:
                model_in = self.scheduler.scale_model_input(latents, step).expand(branches, -1, -1, -1, -1)
                prediction = self.unet(model_in, step, **inputs).sample
                guided = combine(prediction, p.guidance)
                latents = self.scheduler.step(guided, step, latents, eta=p.eta, generator=generator).prev_sample
                if bar is not None:
                    bar.update(1)
            if m:
                motion = latents[:, :, -m:]
            out_latents.append(latents[:, :, :min(t, n - start)])
        if bar is not None:
            bar.close()
        latents = torch.cat(out_latents, dim=2)
        frames = self.decode_latents(latents, p.decode_batch) if decode else np.zeros((0,), np.uint8)
        return Generation(frames=frames, latents=latents, first_motion=first if m else "none", windows=windows)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, batch: int = 8) -> np.ndarray:
        """``(1, C, N, h, w)`` scaled latents -> ``(N, S, S, 3)`` uint8 RGB."""
        vae = self.vae
        flat = latents[0].transpose(0, 1) / vae.config.scaling_factor  # (N, C, h, w)
        out = []
        for i in range(0, flat.shape[0], max(1, batch)):
            images = vae.decode(flat[i:i + batch].to(next(vae.parameters()).dtype)).sample
            out.append(((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out)


def _batched(sample: dict[str, Any], branches: int, device: Any) -> dict[str, Any]:
    """A window sample as a batch of ``branches`` identical rows."""
    return {k: v[None].expand(branches, *v.shape).to(device) if isinstance(v, torch.Tensor) else v for k, v in sample.items()}


def _with_motion(reference_net: Any, reference: dict[str, torch.Tensor], motion: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reference features ``{block: (B, 1, L, C)}`` + the motion frames' ``(B, C, M, h, w)`` -> ``(B, 1 + M, L, C)``."""
    batch, _, m = motion.shape[:3]
    images = motion.permute(0, 2, 1, 3, 4).reshape(batch * m, *motion.shape[1:2], *motion.shape[3:])
    feats = reference_net(images, text.repeat_interleave(m, dim=0)).features
    return {k: torch.cat([v, feats[k].reshape(batch, m, *feats[k].shape[2:])], dim=1) for k, v in reference.items()}


__all__ = ["TalkingFacePipeline", "Generation", "GuidanceParams", "InferenceParams", "clip_seed"]
