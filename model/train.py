"""Train one stage of SynchroRaMa (paper section 4, 3.5): ``a2m``, ``stage1`` or ``stage2``.

    python -m model.train stage1 [--max-steps N] [--resume auto|PATH|none] [--params FILE]
    accelerate launch --num_processes N -m model.train stage1 ...     # several devices (DDP)
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m model.train stage1   # 2 CPU ranks (gloo)

Read top to bottom: setup (params, accelerator, resume point), data, model, optimiser, resume,
loop, checkpoint. Parameters: ``train.common`` + ``train.<stage>`` (:mod:`model.training.params`),
``model`` (:class:`model.builder.ModelParams`), ``data`` (:class:`model.data.DataParams`) and ``weights``
(the SD 1.5 folder every network starts from). Outputs: ``<out_dir>/<stage>/step-N/`` checkpoints
(:mod:`model.training.checkpoint`; ``run.json`` with the resolved config and environment beside
them) and dvclive metrics in ``<log_dir>/<stage>/`` (:mod:`model.training.runlog`). ``--max-steps N``
stops after global step N (the schedule still spans ``train.<stage>.steps``), so a run stopped at k
and resumed to 2k repeats the uninterrupted run's losses bit for bit on CPU.

Stage 2 starts from the newest stage-1 checkpoint (``train.stage2.init_from``) and, with motion frames
from the A2M, uses the newest A2M checkpoint (``a2m_from``); EMA weights when those runs kept them.
"""

from __future__ import annotations

import itertools
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core import cli
from core import params as params_mod
from core.sd15 import verify_sd15_folder
from core.weights import WeightsParams, is_tiny
from model.builder import ModelParams, build_a2m, build_components
from model.data import DataParams, MissingFeatureError
from model.stages import set_stage
from model.training import checkpoint, guards, objective, val_video
from model.training import aux as aux_losses
from model.training.data import Batches, first_batch, make_dataset
from model.training.ema import EMA
from model.training.params import STAGES, resolve
from model.training.runlog import RunLog, Timer, peak_memory_gib
from model.training.step import NETWORKS, TRAINED, Frozen, StageModel, compute, latent_shape, validation_draws

log = logging.getLogger("model.train")


@dataclass
class Result:
    """What a run did: the total loss of every step it ran (mean over ranks), where it ended."""

    stage: str
    start: int
    step: int
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)  # every step's loss terms
    checkpoint: Path | None = None
    aux: dict[str, str] = field(default_factory=dict)


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _newest(folder: str, what: str) -> Path:
    found = checkpoint.newest(folder)
    if found is None:
        raise FileNotFoundError(f"{what}: no checkpoint in {folder} (run `dvc repro train@{Path(folder).name}` first)")
    return found


def train(stage: str, params_file: Path | str | None = None, max_steps: int | None = None, resume: str = "auto") -> Result:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from diffusers.optimization import get_scheduler

    # ---------------------------------------------------------------- setup
    res = resolve(stage, params_file)
    t, raw = res.train, res.raw
    model_params = params_mod.load(ModelParams, "model", params_file, data=raw)
    data_params = params_mod.load(DataParams, "data", params_file, data=raw)
    weights = params_mod.load(WeightsParams, "weights", params_file, data=raw)
    guards.check_params(res, model_params, data_params)
    sd_folder = verify_sd15_folder(Path(weights.dir) / weights.profile / "stable-diffusion-v1-5")
    tiny = is_tiny(sd_folder)
    accelerator = Accelerator(mixed_precision=t.mixed_precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(static_graph=True)])
    device, rank, world, main = accelerator.device, accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    set_seed(t.seed + rank)
    root = Path(t.out_dir) / stage
    resume_from = checkpoint.resume_dir(resume, root)
    rank_state = checkpoint.load_rank(resume_from, rank) if resume_from else None
    end = max_steps if max_steps is not None else t.steps
    if res.tiny_overrides and main:
        log.info("weights.profile tiny: train.tiny sets %s", ", ".join(f"{k}={v}" for k, v in res.tiny_overrides.items()))

    # ---------------------------------------------------------------- data
    shard_root = (raw.get("shards") or {}).get("root", "shards")
    dataset = make_dataset(stage, data_params, "train", t.first_clip_probability, rank, world, shard_root)
    if t.overfit_batch:  # the same first global batch at every step, each rank its slice
        one = make_dataset(stage, data_params, "train", t.first_clip_probability, 0, 1, shard_root)
        batches: Any = itertools.repeat(first_batch(one, t.batch_size * world, rank, t.batch_size))
    else:
        batches = Batches(dataset, t.batch_size, t.num_workers, device.type == "cuda", rank_state["data"] if rank_state else None)
    stream = iter(batches)
    peek = next(stream)
    stream = itertools.chain([peek], stream)

    # ---------------------------------------------------------------- model
    if stage == "a2m":
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(str(sd_folder / "vae"), local_files_only=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(t.seed)
            nets = {"a2m": build_a2m(model_params)}
        null_text, cross_dim, frozen_a2m = None, 0, None
    else:
        from model.conditioning import empty_text_states

        comps = build_components(sd_folder, model_params, seed=t.seed)
        vae, cross_dim = comps.vae, comps.unet.unet.config.cross_attention_dim
        null_text = empty_text_states(comps.text_encoder, comps.tokenizer).to(device)
        frozen_a2m = None
        if stage == "stage2":
            init = _newest(t.init_from, "train.stage2.init_from")
            for name in ("unet", "reference_net", "image_proj"):
                if getattr(comps, name) is None:
                    continue
                if not checkpoint.weights_folder(init, name).is_dir():
                    raise checkpoint.CheckpointError(f"{init} has no {name} (model.{name} is enabled): retrain stage 1 with it, "
                                                     f"or set model.{name}.enabled: false")
                checkpoint.load_weights(getattr(comps, name), checkpoint.weights_folder(init, name))
            if t.motion_source != "gt":
                frozen_a2m = comps.a2m
                checkpoint.load_weights(frozen_a2m, checkpoint.weights_folder(_newest(t.a2m_from, "train.stage2.a2m_from"), "a2m"))
                frozen_a2m.requires_grad_(False).eval().to(device)
            if main:
                log.info("stage 2 starts from %s", init)
        nets = {name: getattr(comps, name) for name in NETWORKS[stage] if getattr(comps, name) is not None}
        del comps
    guards.check_batch(res, peek, model_params, cross_dim)
    set_stage(stage, vae=vae, **nets)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(t.mixed_precision, torch.float32)
    vae.to(device).eval()
    if weight_dtype != torch.float32:
        vae.to(weight_dtype)
    if t.gradient_checkpointing:
        for net in nets.values():
            if getattr(net, "_supports_gradient_checkpointing", False):
                net.enable_gradient_checkpointing()
    model = StageModel(stage, nets).to(device)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    scheduler = objective.noise_scheduler(sd_folder, t) if stage != "a2m" else None
    frozen = Frozen(vae=vae, scheduler=scheduler, null_text_states=null_text, conditioning=model_params.conditioning,
                    a2m=frozen_a2m, audio_context=data_params.audio_context)
    aux_status: dict[str, str] = {}
    if stage == "stage2" or any(getattr(t.aux, n) for n in aux_losses.NAMES):
        frozen.aux, aux_status = aux_losses.setup(stage, t.aux, Path(weights.dir) / weights.profile, _to(peek, device), device,
                                                   quiet=not main)
        if frozen.aux:
            frozen.aux_decoder = aux_losses.load_decoder(t.aux, Path(weights.dir) / weights.profile, vae, device)

    # ---------------------------------------------------------------- optimiser
    optimizer = torch.optim.AdamW(list(named.values()), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay, eps=t.eps)
    lr_scheduler = get_scheduler({"constant": "constant_with_warmup"}.get(t.lr_schedule, t.lr_schedule), optimizer,
                                 num_warmup_steps=t.warmup_steps, num_training_steps=t.steps)
    ema = EMA(named, t.ema_decay) if t.ema else None
    model, optimizer = accelerator.prepare(model, optimizer)  # the lr scheduler steps once per optimiser step, here

    # ---------------------------------------------------------------- resume
    start = 0
    if resume_from:
        state = torch.load(resume_from / "train_state.pt", weights_only=False)
        if state["world_size"] != world or state["stage"] != stage:
            raise checkpoint.CheckpointError(f"{resume_from}: saved by {state['stage']} with {state['world_size']} ranks; this run "
                                             f"is {stage} with {world}: resume with the same world size (or --resume none)")
        bare = accelerator.unwrap_model(model)
        for name in TRAINED[stage]:
            if name in bare.nets:
                checkpoint.load_weights(bare.nets[name], resume_from / name)
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        if accelerator.scaler is not None and state.get("scaler"):
            accelerator.scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        checkpoint.set_rng_state(rank_state["rng"])
        start = int(state["step"])
        if main:
            log.info("resumed from %s (step %d)", resume_from, start)
    record = {"stage": stage, "tiny": tiny, "train": params_mod.as_dict(t), "model": params_mod.as_dict(model_params),
              "data": params_mod.as_dict(data_params), "weights": params_mod.as_dict(weights), "sd_folder": str(sd_folder),
              "tiny_overrides": res.tiny_overrides, "aux": aux_status, **guards.environment(device, world)}
    if main:
        guards.write_run(root, record)
    # which commit ran and whether it resumed describe this execution, not the checkpoint it writes
    run_info = {"git": guards.git_commit(), "resumed_from": str(resume_from) if resume_from else None, "checkpoints": str(root)}
    runlog = RunLog(Path(t.log_dir) / stage, main, resume_from is not None, start, end, t.log_every,
                    {"stage": stage, "tiny": tiny, "world_size": world, "batch_size": t.batch_size, "grad_accum": t.grad_accum},
                    run_info=run_info)
    runlog.summary("tiny", tiny)
    for name, status in aux_status.items():
        runlog.summary(f"aux/{name}_on", int(status == "on"))

    # ---------------------------------------------------------------- loop
    result = Result(stage=stage, start=start, step=start, aux=aux_status)
    shape = latent_shape(stage, vae, peek, model_params.a2m)
    if "reference_latents" in peek:  # the latent cache was encoded at features.latents.size
        guards.check_cached_latents(peek["reference_latents"], vae, data_params.size)
    val_every = t.val_every
    model.train()
    for step in range(start + 1, end + 1):
        timer, terms = Timer(device), {}
        for micro in range(t.grad_accum):
            batch = _to(next(stream), device)
            timer.mark("time/data")
            gens = objective.sample_generators(t.seed, step, micro, rank * t.batch_size, t.batch_size)
            draws = objective.Draws(gens, shape, getattr(scheduler, "config", {}).get("num_train_timesteps", 1), frozen.conditioning)
            # gradients are all-reduced at the last micro-batch only, except in a process's first step: DDP's
            # static graph is recorded there and cannot start inside no_sync
            sync = micro == t.grad_accum - 1 or step == start + 1
            with nullcontext() if sync else accelerator.no_sync(model):
                out = compute(stage, model, frozen, batch, draws, t, step)
                timer.mark("time/forward")
                accelerator.backward(out["loss"] / t.grad_accum)
            timer.mark("time/backward")
            for k, v in out.items():
                terms[k] = terms.get(k, 0.0) + float(v.detach()) / t.grad_accum
        grad_norm = accelerator.clip_grad_norm_(list(named.values()), t.grad_clip or float("inf"))
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update()
        timer.mark("time/optimizer")
        mean = accelerator.reduce(torch.tensor([terms[k] for k in sorted(terms)], device=device), "mean").tolist()
        terms = dict(zip(sorted(terms), mean))
        step_time = sum(timer.times.values())
        result.losses.append(terms["loss"])
        result.history.append(terms)
        result.step = step
        runlog.step(step, {**terms, **timer.times, "time/total": step_time, "lr": lr_scheduler.get_last_lr()[0],
                           "grad_norm": float(grad_norm), "samples_per_s": t.batch_size * t.grad_accum * world / step_time,
                           "memory/peak_gib": peak_memory_gib(device)}, last=step == end)

        if val_every and step % val_every == 0:
            try:
                runlog.metric(step, {"val/loss": validate(stage, accelerator, model, frozen, t, data_params, shard_root, shape)})
                if stage == "stage2" and t.val_video_frames and main:
                    val_video.write(dict(accelerator.unwrap_model(model).nets), frozen, data_params, shard_root,
                                    root / "videos", step, t.val_video_frames, t.val_video_steps)
                accelerator.wait_for_everyone()
            except (FileNotFoundError, ValueError, MissingFeatureError) as e:
                if main:
                    log.warning("validation is off for this run: %s", e)
                val_every = 0

        # ------------------------------------------------------------ checkpoint
        if step % t.checkpoint_every == 0 or step == end:
            accelerator.wait_for_everyone()
            if main:
                checkpoint.begin(root, step)
            accelerator.wait_for_everyone()
            data_state = batches.state_dict() if isinstance(batches, Batches) else None
            checkpoint.save_rank(root, step, rank, {"rng": checkpoint.rng_state(), "data": data_state})
            accelerator.wait_for_everyone()
            if main:
                bare = accelerator.unwrap_model(model)
                state = {"step": step, "stage": stage, "world_size": world, "optimizer": optimizer.state_dict(),
                         "lr_scheduler": lr_scheduler.state_dict(), "ema": ema.state_dict() if ema else None,
                         "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None}
                extra: dict[str, Any] = {"run.json": record}
                if scheduler is not None:
                    extra["scheduler"] = scheduler
                saved = {n: bare.nets[n] for n in TRAINED[stage] if n in bare.nets}
                result.checkpoint = checkpoint.finish(root, step, saved, ema, state, extra, t.keep_last)
            accelerator.wait_for_everyone()
    runlog.close()
    accelerator.end_training()
    return result


@torch.no_grad()
def validate(stage: str, accelerator: Any, model: Any, frozen: Frozen, t: Any, data: DataParams, shard_root: str,
             shape: tuple[int, ...]) -> float:
    """Mean loss over the first ``val_batches`` batches of the val split (nothing dropped, fixed draws)."""
    bare = accelerator.unwrap_model(model).eval()
    rank = accelerator.process_index
    try:
        batches = iter(Batches(make_dataset(stage, data, "val", 0.0, rank, accelerator.num_processes, shard_root), t.batch_size, 0))
        total = 0.0
        for i in range(t.val_batches):
            batch = _to(next(batches), accelerator.device)
            gens = objective.sample_generators(t.seed, 0, 10**6 + i, rank * t.batch_size, t.batch_size)
            draws = validation_draws(objective.Draws(gens, shape, 1000 if frozen.scheduler else 1, frozen.conditioning))
            total += float(compute(stage, bare, Frozen(**{**frozen.__dict__, "aux": None}), batch, draws, t, 0)["loss"])
        value = torch.tensor(total / t.val_batches, device=accelerator.device)
    finally:
        bare.train()
    return float(accelerator.reduce(value, "mean"))


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m model.train", __doc__)
    ap.add_argument("stage", choices=STAGES)
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this global step (default: train.<stage>.steps)")
    ap.add_argument("--resume", default="auto", help="auto (newest checkpoint of the stage, if any) | none | a step-N folder")
    return cli.run(ap, argv, lambda a: train(a.stage, a.params, a.max_steps, a.resume),
                   user_errors=(MissingFeatureError, checkpoint.CheckpointError))


if __name__ == "__main__":
    raise SystemExit(main())
