"""``latents``: the SD 1.5 VAE latents of every frame of the clip (the latent cache of training, DESIGN 6).

Every training step encodes its frames with the frozen VAE (stage 1: target + motion frames + reference,
stage 2: 14 + 2 + 1 frames per video); the encoder is 25-30% of a paper-scale stage-2 step. This feature
encodes each frame once: the posterior MEAN (what :func:`model.conditioning.encode_latents` uses, so a
cached latent is the latent the trainer would compute, up to float16 storage) times the VAE's
``scaling_factor``, from ``weights/<profile>/stable-diffusion-v1-5/vae`` (``diffusers.AutoencoderKL``).
Frames are decoded by ffmpeg as ingest numbered them and resized (area) to ``size`` first, which must
equal ``data.size``; with ``data.latents: cached`` the loader then reads ``latents`` (the window's rows),
``motion_latents`` and ``reference_latents`` from this sidecar instead of decoding the pixels it would
only encode (:mod:`model.data`), and the trainer skips the VAE encoder.

Files: ``latents.npy`` ``(frames, 4, size / 8, size / 8)`` float16 (512 px: 32 KiB per frame, 8 MiB per
10 s clip). Values: ``size``, ``scaling_factor``, the latents' mean and std (about 0 and 1 when scaled).
Off in the demo (``features.latents.enabled: false``): at tiny scale the encoder costs less than the
stage's decode, so the cache is a paper-scale option (``python -m bench.train_step`` measures both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.clip import Clip
from core.sd15 import weights_spec
from core.shards import Member
from pipeline.features import Extractor as BaseExtractor
from pipeline.features import VIDEO_READS, FeatureParams, torch_device
from pipeline.features._frames import frame_chunks

SD15 = weights_spec()
WEIGHTS = (SD15,)
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (
    Member("latents.npy", "float16", ("frames", "channels", "height", "width"),
           "scaled SD VAE posterior mean of each frame resized to features.latents.size", sample="latents", window="frames"),
)


@dataclass(frozen=True)
class Params(FeatureParams):
    size: int = 512  # frames are resized (area) to size x size before encoding: must equal data.size
    frame_batch: int = 16  # frames per VAE forward pass (and per decoded chunk)
    device: str = "auto"  # auto (cuda when visible) | cpu | cuda
    batch_size: int = 2  # clips per call
    gpus: float = 0.5

    def __post_init__(self) -> None:
        if self.size < 8 or self.size % 8 or self.frame_batch < 1:
            raise ValueError("features.latents: size must be a multiple of 8 and frame_batch >= 1")


class Extractor(BaseExtractor):
    name = "latents"
    reads = VIDEO_READS
    version = "1"
    weights = WEIGHTS

    def setup(self) -> None:
        from diffusers import AutoencoderKL

        self.device = torch_device(self.params.device)
        vae = AutoencoderKL.from_pretrained(str(Path(self.folders[SD15.name]) / "vae"), local_files_only=True)
        self.vae = vae.requires_grad_(False).eval().to(self.device)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """``(n, H, W, 3)`` uint8 RGB -> ``(n, C, size/f, size/f)`` float32 scaled posterior means."""
        import cv2
        import torch

        size = self.params.size
        if frames.shape[1:3] != (size, size):
            frames = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
        images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(self.device, torch.float32) / 127.5 - 1
        with torch.no_grad():
            mean = self.vae.encode(images).latent_dist.mean * self.vae.config.scaling_factor
        return mean.float().cpu().numpy()

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        results: list[Any] = []
        for clip, out in zip(clips, outs):
            frames = int(clip.meta["encode"]["frames"])
            parts = [self.encode(chunk) for _, chunk in frame_chunks(clip, np.arange(frames), self.params.frame_batch)]
            latents = np.concatenate(parts)
            if latents.shape[0] != frames:
                raise ValueError(f"{clip.key}: decoded {latents.shape[0]} frames, the clip has {frames}")
            np.save(out / "latents.npy", latents.astype(np.float16))
            values = {"size": self.params.size, "scaling_factor": float(self.vae.config.scaling_factor),
                      "shape": list(latents.shape[1:]), "mean": round(float(latents.mean()), 6), "std": round(float(latents.std()), 6)}
            results.append(clip.evolve(files={f"{self.name}.latents.npy": str(out / "latents.npy")}, meta={self.name: values}))
        return results
