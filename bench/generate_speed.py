"""Seconds of compute per generated second of video (issue: inference and evaluation, item 5).

    python -m bench.generate_speed [--arch tiny|paper] [--device cpu|cuda] [--seconds 1.0] [--steps 40] [--dtype fp32|bf16]

The :class:`model.inference.pipeline.TalkingFacePipeline` with seeded random weights (the speed of a real
checkpoint without having it): ``tiny`` = the tiny SD 1.5 folder (``core.tiny_sd``) with the demo's
component sizes (``train.tiny``: 64x64 frames, 8-frame windows); ``paper`` = the SD 1.5 architectures and
the ``model`` section's paper sizes (512x512, 14-frame windows + 2 motion frames, wav2vec2-base 13 x 768
states), built on the device without weights files. The conditions are random tensors of the features'
shapes (the extractors are benchmarked elsewhere). DDIM with ``--steps`` steps and the default two CFG
branches (batched), the first window's motion frames from the A2M prior, every window chained; the VAE
decode included. A warm-up window runs first and is not timed. Prints JSON and writes
``bench/results/generate_speed_<arch>_<device>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.common import finish, log, rnd

FPS = 25


class RandomClip:
    """A clip source whose windows hold random conditions of the features' shapes."""

    def __init__(self, frames: int, audio_layers: int, audio_dim: int, text_dim: int, context: int, image_dim: int | None):
        self.frames, self.key = frames, "bench"
        self.shapes = {"audio_embed": lambda t: (t + 2 * context, audio_layers, audio_dim), "text_states": lambda t: (77, text_dim),
                       "text_emotion": lambda t: (7,), "speech_emotion": lambda t: (4,), "valence_arousal": lambda t: (t, 2)}
        if image_dim:
            self.shapes["reference_image_embed"] = lambda t: (image_dim,)

    def window(self, start: int, count: int | None = None) -> dict:
        g = torch.Generator().manual_seed(start)
        return {k: torch.randn(f(count), generator=g) for k, f in self.shapes.items()}


def _pipeline(arch: str, device: str, dtype: torch.dtype, folder: Path):
    from diffusers import DDIMScheduler

    from core import params as params_mod
    from model.builder import ModelParams, build_components
    from model.inference.pipeline import TalkingFacePipeline

    if arch == "tiny":
        from core.tiny_sd import write_tiny_sd15
        from model.training.params import resolve

        sd = write_tiny_sd15(folder / "sd", seed=0)
        raw = resolve("stage2").raw  # params.yaml with train.tiny applied (the demo's sizes)
        mp = params_mod.load(ModelParams, "model", data=raw)
        comps = build_components(sd, mp, seed=0)
        scheduler = DDIMScheduler.from_pretrained(str(sd / "scheduler"))
        size, frames = int(raw["data"]["size"]), int(raw["data"]["target_frames"])
    else:
        mp = ModelParams()
        comps = build_components(None, mp, device="cpu", seed=0)
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                  set_alpha_to_one=False, steps_offset=1)
        from transformers import CLIPTokenizer

        from core.tiny_sd import write_tiny_sd15

        # only the empty caption is tokenised (the null text states): the tiny vocabulary gives the same ids
        comps.tokenizer = CLIPTokenizer.from_pretrained(str(write_tiny_sd15(folder / "sd", seed=0) / "tokenizer"))
        size, frames = 512, 14
    image_proj = getattr(comps, "image_proj", None)
    pipe = TalkingFacePipeline(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer, unet=comps.unet,
                               reference_net=comps.reference_net, audio_proj=comps.audio_proj, emotion_embed=comps.emotion_embed,
                               scheduler=scheduler, a2m=comps.a2m, image_proj=image_proj)
    pipe.to(device) if dtype == torch.float32 else pipe.to(device, dtype)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    source_dims = (mp.audio_proj.num_layers, mp.audio_proj.feature_dim, comps.unet.unet.config.cross_attention_dim,
                   mp.audio_proj.context_frames, image_proj.config.in_dim if image_proj is not None else None)
    return pipe, size, frames, source_dims


def main(argv: list[str] | None = None) -> int:
    from model.inference.params import InferenceParams

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=("tiny", "paper"), default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds of video generated (timed)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="default: fp32 on CPU, bf16 on GPUs")
    a = ap.parse_args(argv)
    dtype_name = a.dtype or ("fp32" if a.device == "cpu" else "bf16")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    with tempfile.TemporaryDirectory() as tmp:
        pipe, size, window, dims = _pipeline(a.arch, a.device, dtype, Path(tmp))
    params = InferenceParams(steps=a.steps, dtype=dtype_name)
    frames = max(1, round(a.seconds * FPS))
    reference = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    log(f"generate_speed: {a.arch} on {a.device} ({dtype_name}), {frames} frames at {size}x{size}, {a.steps} steps")
    pipe(RandomClip(window, *dims), reference, InferenceParams(steps=1, dtype=dtype_name), frames_per_clip=window, progress=False)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, cpu = time.perf_counter(), time.process_time()
    out = pipe(RandomClip(frames, *dims), reference, params, frames_per_clip=window, progress=False)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    result = {"arch": a.arch, "device": a.device, "dtype": dtype_name, "size": size, "window_frames": window,
              "frames": int(out.frames.shape[0]), "windows": out.windows, "steps": a.steps,
              "cfg_branches": len(params.guidance.branches()), "seconds": rnd(seconds),
              "s_per_generated_s": rnd(seconds / (frames / FPS)), "cpu_s_per_generated_s": rnd(cpu / (frames / FPS)),
              "unet_calls": out.windows * a.steps,
              "threads": torch.get_num_threads()}
    if a.device.startswith("cuda"):
        result["peak_memory_gib"] = rnd(torch.cuda.max_memory_allocated() / 2**30)
    finish(f"generate_speed_{a.arch}_{a.device.split(':')[0]}", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
