"""Scale figures at paper scale, without weights (issue 7 point 5; was ``model/scale.py``).

Paper setting (section 4): SD 1.5 backbone, 512x512 video (64x64 latents), batch 4, 14 frames per
clip + 2 motion frames, bf16, gradient checkpointing.

- ``parameter_counts``: every component built by ``model.builder.build_components(None, params, "meta")``
  (the SD 1.5 architectures and the ``model`` section's sizes; shapes only, no memory).
- ``activation_bytes``: one training forward traced with fake tensors on a (fake) CPU device, in
  bf16, so that attention dispatches to the same fused kernels as on a GPU (saving q, k, v, the
  output and the log-sum-exp, not the attention matrix). Every tensor autograd saves is counted
  once (by storage). With gradient checkpointing (diffusers checkpoints every ``ResnetBlock2D`` and
  ``BasicTransformerBlock``) the estimate is: what is saved outside those blocks, plus their inputs,
  plus the largest single block recomputed during the backward pass.
- ``training_memory``: model states (trainable parameters: fp32 weight + fp32 gradient + AdamW's two
  fp32 moments = 16 bytes; frozen parameters: bf16, 2 bytes) + activations + the ReferenceNet
  features held for the UNet. Not counted: activation gradients in flight, allocator
  fragmentation, CUDA context and workspaces (add roughly 10-20%).

``python -m bench.paper_scale`` prints all figures as JSON and writes ``bench/results/paper_scale.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

GIB = 2**30


@dataclass(frozen=True)
class PaperSetting:
    batch: int = 4
    frames: int = 14
    motion_frames: int = 2
    resolution: int = 512
    vae_factor: int = 8
    text_tokens: int = 77

    @property
    def latent(self) -> int:
        return self.resolution // self.vae_factor


def _count(module: nn.Module, predicate=None) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if predicate is None or predicate(n))


def build_components(device: str | torch.device = "meta", params: Any = None) -> dict[str, nn.Module]:
    """Every component at paper scale (``model.builder``, ``params`` default ``ModelParams()``) on ``device``
    (``meta``: no memory), by report name."""
    from model.builder import ModelParams
    from model.builder import build_components as build

    c = build(None, params or ModelParams(), device)
    return {("denoising_unet" if name == "unet" else name): module for name, module in c.modules().items()}


def parameter_counts(components: dict[str, nn.Module] | None = None) -> dict[str, int]:
    """Parameters per component (and the DenoisingUNet split into SD base and added modules)."""
    from model.stages import set_stage

    c = components or build_components("meta")
    unet = c["denoising_unet"]
    counts = {name: _count(m) for name, m in c.items()}
    for kind in ("temporal", "audio", "emotion"):
        counts[f"denoising_unet.{kind}"] = sum(_count(m) for m in unet.added_modules(kind))
    counts["denoising_unet.sd_base"] = counts["denoising_unet"] - sum(
        counts[f"denoising_unet.{k}"] for k in ("temporal", "audio", "emotion")
    )
    unused = set(c["reference_net"].unused_parameter_names())
    counts["reference_net.unused"] = _count(c["reference_net"], lambda n: n in unused)
    for stage in ("stage1", "stage2", "a2m"):
        trainable = set_stage(
            stage,
            unet=unet,
            reference_net=c["reference_net"],
            audio_proj=c["audio_proj"],
            emotion_embed=c["emotion_embed"],
            a2m=c["a2m"],
            image_proj=c.get("image_proj"),
            vae=c["vae"],
            text_encoder=c["text_encoder"],
        )
        counts[f"trainable.{stage}"] = sum(p.numel() for p in trainable)
    counts["total"] = sum(counts[k] for k in c)
    return counts


class _SavedTensorAccounting:
    """Counts the storages autograd saves, attributed to checkpointable blocks (or to none)."""

    def __init__(self, region_types: tuple[type, ...]):
        self.region_types = region_types
        self.stack: list[int] = []
        self.outside: dict[int, int] = {}
        self.region_inputs: dict[int, int] = {}
        self.region_saved: list[dict[int, int]] = []
        self.everything: dict[int, int] = {}
        self.handles: list[Any] = []

    @staticmethod
    def _key(t: torch.Tensor) -> tuple[int, int]:
        storage = t.untyped_storage()
        return storage._cdata, storage.nbytes()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        sid, nbytes = self._key(t)
        self.everything[sid] = nbytes
        if self.stack:
            self.region_saved[self.stack[-1]][sid] = nbytes
        else:
            self.outside[sid] = nbytes
        return t

    def attach(self, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, self.region_types):
                self.handles.append(module.register_forward_pre_hook(self._enter, with_kwargs=True))
                self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, module, args, kwargs):
        if not self.stack:  # an outermost checkpointed block: its tensor inputs are kept
            for value in list(args) + list(kwargs.values()):
                if isinstance(value, torch.Tensor):
                    sid, nbytes = self._key(value)
                    self.region_inputs[sid] = nbytes
        self.region_saved.append({})
        self.stack.append(len(self.region_saved) - 1)

    def _leave(self, module, args, output):
        self.stack.pop()

    def detach(self) -> None:
        for h in self.handles:
            h.remove()

    def summary(self) -> dict[str, int]:
        kept = {**self.outside, **self.region_inputs}
        largest_block = max((sum(r.values()) for r in self.region_saved), default=0)
        return {
            "no_checkpointing": sum(self.everything.values()),
            "checkpointing": sum(kept.values()) + largest_block,
            "checkpointing.kept": sum(kept.values()),
            "checkpointing.largest_block": largest_block,
        }


def activation_bytes(stage: str = "stage2", setting: PaperSetting = PaperSetting(), params: Any = None) -> dict[str, int]:
    """Activation bytes of one training forward at paper scale in bf16, traced with fake tensors.

    ``stage1``: F = 1 target frame, ReferenceNet trained (its activations counted);
    ``stage2``: F = ``setting.frames``, ReferenceNet frozen (run without autograd; only its features
    are held), audio and emotion tokens present.
    """
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.resnet import ResnetBlock2D
    from torch._subclasses.fake_tensor import FakeTensorMode

    from model.builder import (
        ModelParams,
        build_audio_proj,
        build_denoising_unet,
        build_emotion_embed,
        build_reference_net,
    )

    if stage not in ("stage1", "stage2"):
        raise ValueError("activation_bytes covers stage1 and stage2")
    s, params = setting, params or ModelParams()
    frames = 1 if stage == "stage1" else s.frames
    dtype = torch.bfloat16
    previous_dtype = torch.get_default_dtype()
    accounting = _SavedTensorAccounting((ResnetBlock2D, BasicTransformerBlock))
    with FakeTensorMode():
        torch.set_default_dtype(dtype)
        try:
            unet, reference_net = build_denoising_unet(params), build_reference_net()
            audio_proj, emotion_embed = build_audio_proj(params), build_emotion_embed(params)
        finally:
            torch.set_default_dtype(previous_dtype)
        b, c, h = s.batch, unet.unet.config.in_channels, s.latent
        text = torch.randn(b, s.text_tokens, unet.unet.config.cross_attention_dim, dtype=dtype)
        reference = torch.randn(b, c, h, h, dtype=dtype)
        motion = torch.randn(b, c, s.motion_frames, h, h, dtype=dtype)
        noisy = torch.randn(b, c, frames, h, h, dtype=dtype)
        timestep = torch.randint(0, 1000, (b,))
        cfg_a, cfg_e = audio_proj.config, emotion_embed.config
        accounting.attach(unet)
        accounting.attach(reference_net)
        try:
            with torch.autograd.graph.saved_tensors_hooks(accounting.pack, lambda t: t):
                if stage == "stage1":
                    features = reference_net(reference, text, motion).features
                    audio = emotion = None
                else:
                    with torch.no_grad():
                        features = reference_net(reference, text, motion).features
                    audio = audio_proj(torch.randn(b, frames, cfg_a.num_layers, cfg_a.feature_dim, dtype=dtype))
                    emotion = emotion_embed(
                        torch.randn(b, cfg_e.text_dim, dtype=dtype),
                        torch.randn(b, cfg_e.ser_dim, dtype=dtype),
                        torch.randn(b, cfg_e.va_segments, cfg_e.va_dim, dtype=dtype),
                    )
                unet(noisy, timestep, text, reference_features=features, audio_tokens=audio, emotion_tokens=emotion)
        finally:
            accounting.detach()
        result = accounting.summary()
        result["reference_features"] = sum(t.numel() * t.element_size() for t in features.values())
    return result


def training_memory(stage: str = "stage2", setting: PaperSetting = PaperSetting(), counts: dict[str, int] | None = None) -> dict[str, float]:
    """Estimated peak training memory (GiB) of one step, bf16 activations, with and without
    gradient checkpointing (see the module docstring for what is counted)."""
    counts = counts or parameter_counts()
    components = ("denoising_unet", "reference_net", "audio_proj", "emotion_embed", "vae", "text_encoder", "image_proj")
    total_params = sum(counts.get(k, 0) for k in components)
    trainable = counts[f"trainable.{stage}"]
    states = trainable * 16 + (total_params - trainable) * 2
    act = activation_bytes(stage, setting)
    ckpt = states + act["checkpointing"] + act["reference_features"]
    plain = states + act["no_checkpointing"] + act["reference_features"]
    return {
        "model_states_gib": states / GIB,
        "activations_checkpointing_gib": act["checkpointing"] / GIB,
        "activations_no_checkpointing_gib": act["no_checkpointing"] / GIB,
        "reference_features_gib": act["reference_features"] / GIB,
        "total_checkpointing_gib": ckpt / GIB,
        "total_no_checkpointing_gib": plain / GIB,
    }


def report(setting: PaperSetting = PaperSetting()) -> dict[str, Any]:
    counts = parameter_counts()
    return {
        "setting": asdict(setting),
        "parameters": counts,
        "memory": {stage: training_memory(stage, setting, counts) for stage in ("stage1", "stage2")},
    }


def main() -> int:
    from bench.common import finish

    finish("paper_scale", report())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
