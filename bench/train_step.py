"""One training step, measured: where the time goes at tiny scale on CPU, what the latent cache saves, what the
auxiliary-loss decode costs with each decoder, and the paper-scale memory per stage (issue 19, items 4 and 10).

    python -m bench.train_step [--steps 30] [--reps 2] [--workers W] [--skip 3] [--aux-frames 4]

1. Step-time breakdown (``time/data`` = waiting for the loader, ``forward``, ``backward``, ``optimizer``, as
   ``model.train`` logs them) of stage 1 and stage 2 on the trainer tests' tiny project
   (``tests.model.train.project``: toy 32x32 clips, tiny SD 1.5, batch 2, stage-2 windows of 4 frames) with
   the repository's loader workers for the tiny profile (``train.common.num_workers`` after ``train.tiny``,
   unless ``--workers``) and with 0 workers (loading inside the step) for comparison. The first ``--skip``
   steps (start-up) are left out. Goal: data wait under 10% of the step.
2. The latent cache: the same runs with ``data.latents: cached`` (a ``latents`` sidecar of the tiny VAE's
   latents of every frame, what ``extract@latents-<dataset>`` writes): step time saved; plus the SD 1.5
   VAE encoder (its architecture, random weights) on one 512x512 frame on this CPU, the cost a paper-scale
   step pays per frame (17 frames per stage-2 video) without the cache.
3. The auxiliary losses' decode: stage 2 with the attr-action loss on every sample (tiny CLIP judge,
   ``aux.frames`` frames) through the VAE and through the tiny decoder (``train.aux.decoder: tiny``), vs
   without; and at paper scale the bytes autograd saves to decode ``aux.frames`` x batch frames with gradient
   through the SD 1.5 VAE decoder and through TAESD (``diffusers.AutoencoderTiny`` default config), in bf16,
   traced with fake tensors as ``bench.paper_scale`` traces the networks.
4. ``bench.paper_scale``'s memory per stage (gradient checkpointing) plus that decode: the stage-2 peak.

Writes ``bench/results/train_step.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from bench.common import finish, temp_folder

PARTS = ("data", "forward", "backward", "optimizer", "total")


def _times(log_dir: Path, skip: int) -> dict[str, float]:
    """Mean seconds per step of each part (dvclive's ``time/<part>.tsv``), the first ``skip`` steps left out; the
    data share of the mean step; the median step (robust to the other jobs' spikes, used for comparisons)."""
    out = {}
    for part in PARTS:
        rows = (log_dir / "plots" / "metrics" / "time" / f"{part}.tsv").read_text().splitlines()[1:]
        values = [float(r.split("\t")[1]) for r in rows][skip:]
        out[part] = statistics.fmean(values)
        if part == "total":
            out["median_total"] = statistics.median(values)
    out["data_share"] = out["data"] / out["total"]
    return out


def _median_seconds(fn: Any, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def isolated(root: Path, batch: int, window: int, motion: int, aux_frames: int, reps: int = 15) -> dict[str, float]:
    """Seconds of the parts the latent cache and the tiny decoder change, timed alone (low noise): the VAE encode of a
    step's frames (stage 1: target + motion + reference; stage 2: window + motion + reference), and decoding
    ``aux_frames`` x ``batch`` latents with gradient (forward + backward) through the VAE and through the tiny decoder;
    the tiny project's sizes (32 px frames) and, for the paper's architectures (SD 1.5 VAE, TAESD, random weights),
    one 128 px frame."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    from model.builder import build_vae
    from model.conditioning import encode_latents

    sd = root / "weights" / "tiny" / "stable-diffusion-v1-5" / "vae"
    vae = AutoencoderKL.from_pretrained(str(sd)).eval().requires_grad_(False)
    tiny = AutoencoderTiny.from_pretrained(str(root / "weights" / "tiny" / "taesd")).eval().requires_grad_(False)
    size = 32

    def frames(n: int) -> torch.Tensor:
        return torch.rand(batch, n, 3, size, size) * 2 - 1

    def decode(decoder: Any, latents: torch.Tensor) -> Any:
        def run() -> None:
            x = latents.clone().requires_grad_(True)
            decoder.decode(x / decoder.config.scaling_factor).sample.square().mean().backward()
        return run

    latents = torch.randn(batch * aux_frames, 4, size // 2, size // 2)
    out = {
        "encode_stage1_s": _median_seconds(lambda: encode_latents(vae, frames(1 + motion + 1)), reps),
        "encode_stage2_s": _median_seconds(lambda: encode_latents(vae, frames(window + motion + 1)), reps),
        "aux_decode_vae_s": _median_seconds(decode(vae, latents), reps),
        "aux_decode_tiny_s": _median_seconds(decode(tiny, latents), reps),
    }
    paper_vae, paper_tiny = build_vae().eval().requires_grad_(False), AutoencoderTiny().eval().requires_grad_(False)
    one = torch.randn(1, 4, 16, 16)
    out["paper_arch_decode_128px_vae_s"] = _median_seconds(decode(paper_vae, one), 2)
    out["paper_arch_decode_128px_tiny_s"] = _median_seconds(decode(paper_tiny, one), 2)
    return out


def _latents_sidecar(root: Path) -> None:
    """A ``latents`` sidecar of the toy clips: the tiny VAE's scaled posterior means of every decoded frame."""
    from diffusers import AutoencoderKL

    from core.media import clip_frames
    from core.shards import ShardLayout
    from model.conditioning import encode_latents
    from tests.model.data import toy

    vae = AutoencoderKL.from_pretrained(str(root / "weights" / "tiny" / "stable-diffusion-v1-5" / "vae")).eval()

    def write(key: str, i: np.ndarray) -> list:
        frames = np.stack(list(clip_frames(root / "media" / f"{key.split('__')[1]}.mp4", 0.0, 25, len(i), (toy.SIDE, toy.SIDE))))
        latents = encode_latents(vae, torch.from_numpy(frames).permute(0, 3, 1, 2)[None].contiguous())[0].transpose(0, 1)
        return [("latents.npy", toy.npy(latents.numpy().astype(np.float16)))]

    toy.add_sidecar(ShardLayout(root / "shards"), "latents", toy.members_of("latents"), write)


def _params(root: Path, out: Path, workers: int, latents: str, aux: dict | None = None) -> Path:
    from tests.model.train.project import DATA, write_params

    stage2 = {"init_from": str(root / "init" / "checkpoints" / "stage1"), "aux": aux or {}}
    path = write_params(root, out, common={"num_workers": workers, "checkpoint_every": 100000, "log_every": 1,
                                           "steps": 1000}, stage2=stage2)
    data = yaml.safe_load(path.read_text())
    data["data"] = {**DATA, "latents": latents, "samples_per_clip": 8,
                    "stage1_features": [*DATA["stage1_features"], "latents"], "stage2_features": [*DATA["stage2_features"], "latents"]}
    path.write_text(yaml.safe_dump(data))
    return path


def _run(stage: str, params: Path, steps: int, skip: int) -> dict[str, Any]:
    from model.train import train

    t0 = time.perf_counter()
    result = train(stage, params, max_steps=steps, resume="none")
    wall = time.perf_counter() - t0
    aux_on = sum(status == "on" for status in result.aux.values())
    return {**_times(params.parent / "reports" / stage, skip), "wall_s": wall, "aux_on": aux_on}


def _encoder_seconds(size: int = 512) -> float:
    """The SD 1.5 VAE encoder (random weights) on one ``size`` frame on this CPU (after a 64 px warm-up)."""
    from model.builder import build_vae

    vae = build_vae().eval()
    with torch.no_grad():
        vae.encode(torch.zeros(1, 3, 64, 64))
        t0 = time.perf_counter()
        vae.encode(torch.rand(1, 3, size, size) * 2 - 1)
    return time.perf_counter() - t0


def decode_saved_bytes(decoder: str, frames: int, latent: int = 64) -> int:
    """Bytes autograd saves (the decoder's weights left out) to decode ``frames`` latents ``(4, latent, latent)`` with
    gradient to the latents, bf16, traced with fake tensors: the SD 1.5 VAE decoder (``vae``) or TAESD (``tiny``)."""
    from diffusers import AutoencoderKL, AutoencoderTiny
    from torch._subclasses.fake_tensor import FakeTensorMode

    from core.sd15 import SD15_VAE_CONFIG

    seen: dict[int, int] = {}
    weights: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in weights:  # the decoder's own weights are not extra memory
            seen[storage._cdata] = storage.nbytes()
        return t

    previous = torch.get_default_dtype()
    with FakeTensorMode():
        torch.set_default_dtype(torch.bfloat16)
        try:
            model = AutoencoderKL(**SD15_VAE_CONFIG) if decoder == "vae" else AutoencoderTiny()
        finally:
            torch.set_default_dtype(previous)
        model.requires_grad_(False)
        weights.update(p.untyped_storage()._cdata for p in model.parameters())
        x = torch.randn(frames, 4, latent, latent, dtype=torch.bfloat16, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.decode(x / model.config.scaling_factor)
    return sum(seen.values())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: params.yaml's for the tiny profile)")
    ap.add_argument("--aux-frames", type=int, default=4, help="frames decoded with gradient per video at tiny scale")
    ap.add_argument("--paper-aux-frames", type=int, default=14)
    ap.add_argument("--reps", type=int, default=2, help="repetitions of every case (medians reported)")
    args = ap.parse_args(argv)
    from bench import paper_scale
    from core.tiny_sd import write_tiny_taesd
    from core.weights import WeightsParams, ensure
    from judges import clip_image
    from model.train import train
    from model.training.params import resolve
    from tests.model.train.project import make_project, write_params

    torch.set_num_threads(1)
    workers = args.workers if args.workers is not None else resolve("stage1").train.num_workers
    out: dict[str, Any] = {"steps": args.steps, "skipped": args.skip, "workers": workers, "reps": args.reps}
    with temp_folder("train_step") as tmp:
        root = make_project(tmp / "project")
        _latents_sidecar(root)
        train("stage1", write_params(root, root / "init"), max_steps=1, resume="none")
        ensure(clip_image.SPEC, WeightsParams(profile="tiny", dir=str(root / "weights")))
        write_tiny_taesd(root / "weights" / "tiny" / "taesd", seed=0)
        aux = {"attr_action": 0.05, "max_timestep": 1000, "frames": args.aux_frames}
        cases = [(f"{stage}/{name}", stage, w, latents, None) for stage in ("stage1", "stage2")
                 for name, w, latents in (("default_workers", workers, "pixels"), ("no_workers", 0, "pixels"),
                                          ("latent_cache", workers, "cached"))]
        cases += [(f"stage2/aux_{d}", "stage2", workers, "pixels", {**aux, "decoder": d}) for d in ("vae", "tiny")]
        measured: dict[str, list[dict[str, float]]] = {}
        for rep in range(args.reps):  # the order rotates, so load from elsewhere falls on every case alike
            for name, stage, w, latents, aux_params in cases[rep % len(cases):] + cases[:rep % len(cases)]:
                params = _params(root, tmp / f"{name.replace('/', '-')}-{rep}", w, latents, aux_params)
                measured.setdefault(name, []).append(_run(stage, params, args.steps, args.skip))
        runs = {name: {k: statistics.median(r[k] for r in reps) for k in reps[0]} for name, reps in measured.items()}
        out["tiny_cpu"] = runs
        from tests.model.train.project import DATA

        parts = isolated(root, 2, DATA["target_frames"], DATA["motion_frames"], args.aux_frames)
    out["isolated"] = parts
    base = {s: runs[f"{s}/default_workers"]["median_total"] for s in ("stage1", "stage2")}
    out["latent_cache_saving_runs"] = {s: 1 - runs[f"{s}/latent_cache"]["median_total"] / base[s] for s in base}
    out["latent_cache_saving_isolated"] = {s: parts[f"encode_{s}_s"] / base[s] for s in base}
    out["aux_extra_time_runs"] = {d: runs[f"stage2/aux_{d}"]["median_total"] / base["stage2"] - 1 for d in ("vae", "tiny")}
    out["sd15_vae_encoder_s_per_512_frame_cpu"] = _encoder_seconds()
    n = paper_scale.PaperSetting().batch * args.paper_aux_frames
    decode = {d: decode_saved_bytes(d, n) / paper_scale.GIB for d in ("vae", "tiny")}
    out["paper_aux_decode_gib"] = {"frames": n, **decode}
    memory = paper_scale.report()["memory"]
    out["paper_memory_gib"] = {
        "stage1": memory["stage1"]["total_checkpointing_gib"],
        "stage2": memory["stage2"]["total_checkpointing_gib"],
        "stage2_aux_vae": memory["stage2"]["total_checkpointing_gib"] + decode["vae"],
        "stage2_aux_tiny": memory["stage2"]["total_checkpointing_gib"] + decode["tiny"],
    }
    return finish("train_step", out)


if __name__ == "__main__":
    main()
