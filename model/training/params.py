"""The ``train`` section of params.yaml: ``train.common`` + ``train.<stage>`` -> one :class:`TrainParams`.

``train.common`` holds every key (defaults: the paper's settings, section 4: batch 4, lr 1e-5, 30k
steps); ``train.a2m`` / ``train.stage1`` / ``train.stage2`` override any of them for one stage (nested
``aux`` keys are merged key by key). ``train.tiny`` maps dotted keys of the ``data``, ``model`` and
``train`` sections to the values used when ``weights.profile`` is ``tiny``: the sizes of the tiny
stand-ins' sidecars (wav2vec2 2 x 32 states), CPU-sized frames and a few steps for the demo. A typo
anywhere is an error naming the key (:mod:`core.params`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core import params as params_mod

STAGES = ("a2m", "stage1", "stage2")


@dataclass(frozen=True)
class AuxParams:
    """``train.<stage>.aux``: the auxiliary losses of paper eq. 2-5 (stage 2), each on x0 predicted for
    timesteps below ``max_timestep`` and decoded through the VAE for ``frames`` consecutive frames
    of each video. A weight of 0 switches a loss off; a loss whose judge or ground-truth target is
    missing is switched off with one logged line and ``aux/<name>_on = 0`` in the run's metrics."""

    sync: float = 0.0  # eq. 2, soft offset + location from SyncNet (judges.sync) vs the ground truth's
    emo: float = 0.0  # eq. 3, visual valence/arousal (judges.face_va) of decoded frames vs the cached target
    au: float = 0.0  # eq. 4, action-unit intensities (judges.action_units) vs the cached target
    attr_action: float = 0.0  # eq. 5, 1 - cos of CLIP image embeddings (judges.clip_image) vs the cached target
    max_timestep: int = 200  # aux losses only for samples with t < this (x0 is meaningful there)
    frames: int = 14  # consecutive frames decoded with gradient per video (the sync loss needs >= 8)
    # at most this many eligible videos of a micro-batch are decoded (0: all): the decode's memory is per frame
    # (2.84 GiB per 512 px frame with the SD VAE, bench/README.md), so 4 x 14 frames would not fit any GPU
    max_videos: int = 0
    emo_target: str = "face_va"  # batch entries holding the cached ground truth (a sidecar's sample name)
    au_target: str = "action_units"
    attr_action_target: str = "clip_image"
    # the decoder of x0 -> frames: the SD 1.5 VAE's (exact, costly), or "tiny": a TAESD-layout diffusers
    # AutoencoderTiny (madebyollin/taesd: same latents, ~1% of the decoder's FLOPs, approximate frames) loaded
    # from weights/<profile>/<tiny_decoder>/ (memory and time of each: bench/README.md, bench.train_step)
    decoder: Literal["vae", "tiny"] = "vae"
    tiny_decoder: str = "taesd"

    def __post_init__(self) -> None:
        for name in ("sync", "emo", "au", "attr_action"):
            if getattr(self, name) < 0:
                raise ValueError(f"aux.{name} must be >= 0")
        if self.max_videos < 0:
            raise ValueError("aux.max_videos must be >= 0 (0: every eligible video)")
        if self.frames < 1:
            raise ValueError("aux.frames must be >= 1")
        if self.decoder not in ("vae", "tiny"):
            raise ValueError(f"aux.decoder must be vae or tiny, got {self.decoder!r}")


@dataclass(frozen=True)
class TrainParams:
    """One stage's resolved training parameters (``train.common`` + ``train.<stage>``)."""

    steps: int = 30000  # optimiser steps (paper: 30k per stage)
    batch_size: int = 4  # per device (paper: 4)
    grad_accum: int = 1  # micro-batches per optimiser step
    lr: float = 1e-5
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"  # after warmup
    warmup_steps: int = 0
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm (0: off)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # autocast; master weights stay fp32
    gradient_checkpointing: bool = False
    ema: bool = False
    ema_decay: float = 0.9999
    seed: int = 0
    num_workers: int = 2  # DataLoader workers per rank
    log_every: int = 10  # dvclive rows every N steps (losses averaged over them)
    val_every: int = 0  # validation loss on the val split every N steps (0: off)
    val_batches: int = 2
    # stage 2: with each validation, a video of the val split's first clip (its first N frames, from its first frame
    # and own audio) generated through the inference code, in <out_dir>/stage2/videos/step-N.mp4 (0: none)
    val_video_frames: int = 0
    val_video_steps: int = 20  # its DDIM steps
    checkpoint_every: int = 1000  # and always at the last step
    keep_last: int = 2  # step-N folders kept
    out_dir: str = "checkpoints"  # checkpoints/<stage>/step-N/
    log_dir: str = "reports/train"  # dvclive: reports/train/<stage>/
    overfit_batch: bool = False  # train on the first global batch at every step (debugging, the learns benchmark)
    # objective (one switch shared with inference: written to <checkpoint>/scheduler/)
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    zero_terminal_snr: bool = False  # rescale betas to zero terminal SNR (Lin et al. 2024; needs v_prediction)
    timestep_spacing: Literal["leading", "trailing", "linspace"] = "leading"  # inference spacing ("trailing" with zero SNR)
    min_snr_gamma: float | None = None  # min-SNR-gamma weighting per sample (Hang et al. 2023; 5.0 is usual)
    noise_offset: float = 0.0  # per-sample, per-channel offset noise scale (0.05-0.1 usual)
    # motion frames (stage 2): ground truth, the A2M's, or a per-sample mix
    motion_source: Literal["gt", "a2m", "mix"] = "gt"
    a2m_probability: float = 0.5  # mix: probability of the A2M's motion frames per sample
    first_clip_probability: float = 0.05  # the first-clip case of inference (no previous frames)
    init_from: str = ""  # stage 2: the stage-1 checkpoints folder (newest step), e.g. checkpoints/stage1
    a2m_from: str = ""  # stage 2 with motion a2m|mix: the A2M checkpoints folder, e.g. checkpoints/a2m
    # A2M
    kl_weight: float = 1e-3
    kl_anneal_steps: int = 0  # linear 0 -> kl_weight over these steps (0: constant)
    aux: AuxParams = field(default_factory=AuxParams)

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "log_every", "keep_last", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("a2m_probability", "first_clip_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.zero_terminal_snr and self.prediction_type != "v_prediction":
            raise ValueError("zero_terminal_snr needs prediction_type: v_prediction (at zero SNR the noise cannot be predicted)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")


@dataclass(frozen=True)
class Resolved:
    """Everything a stage trains with, after ``train.tiny`` (for the tiny profile) was applied."""

    stage: str
    train: TrainParams
    raw: dict[str, Any]  # the params file's sections as used (for run.json and the other loaders)
    tiny_overrides: dict[str, Any]


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    parts = dotted.split(".")
    if parts[0] not in ("data", "model", "train") or len(parts) < 2:
        raise params_mod.ParamsError(f"{where}: key '{dotted}' must start with data., model. or train.")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise params_mod.ParamsError(f"{where}: '{dotted}' goes through a value that is not a section")
    node[parts[-1]] = value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve(stage: str, path: Path | str | None = None) -> Resolved:
    """``train.common`` + ``train.<stage>`` of the params file (``train.tiny`` applied first when
    ``weights.profile`` is tiny), validated; the raw sections for the data and model loaders."""
    if stage not in STAGES:
        raise params_mod.ParamsError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    path = Path(path) if path is not None else params_mod.params_path()
    raw = copy.deepcopy(params_mod.read_yaml(path))
    section = raw.get("train") or {}
    known = {"common", "tiny", *STAGES}
    unknown = sorted(set(section) - known)
    if unknown:
        raise params_mod.ParamsError(f"{path}: train: unknown key '{unknown[0]}' (known keys: {', '.join(sorted(known))})")
    profile = (raw.get("weights") or {}).get("profile", "tiny")
    tiny = dict(section.get("tiny") or {})
    if profile == "tiny":
        for dotted, value in tiny.items():
            _set_dotted(raw, dotted, value, f"{path}: train.tiny")
        section = raw.get("train") or {}
    common = section.get("common") or {}
    override = section.get(stage) or {}
    # each part alone first, so a typo names its own section
    params_mod.from_dict(TrainParams, common, f"{path}: train.common")
    params_mod.from_dict(TrainParams, override, f"{path}: train.{stage}")
    train = params_mod.from_dict(TrainParams, _merge(common, override), f"{path}: train.common + train.{stage}")
    return Resolved(stage=stage, train=train, raw=raw, tiny_overrides=tiny if profile == "tiny" else {})
