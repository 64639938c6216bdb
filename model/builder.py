"""The one builder of every SynchroRaMa component (paper sections 3-4).

``ModelParams`` is the ``model`` section of params.yaml: the init arguments of the components that
are not SD 1.5 (AudioProjection, EmotionEmbedding, A2M with its VPFlow) and the DenoisingUNet's added
token sizes, plus the conditioning (classifier-free-guidance dropout) of :mod:`model.conditioning`.
Defaults are the paper-scale values (wav2vec2-base 13 x 768 states, 7 text-emotion and 4 SER
classes, 768-d tokens for the SD 1.5 UNet).

:func:`build_components` builds all of them:

- from a local SD 1.5 folder (:mod:`core.sd15` layout; never from the network): "Both networks are
  initialized with weights from the original Stable Diffusion model" (section 4): the 4-attention
  DenoisingUNet and the ReferenceNet start from ``unet/`` (read once); the VAE, CLIP text encoder and
  tokenizer are used as they are (frozen); the other components are new, from ``params``;
- the ImageProjection (:mod:`model.image_proj`, figure 2a's CLIP path of the reference image) takes the
  UNet's ``cross_attention_dim``; ``model.image_proj.enabled: false`` leaves it out (``None``);
- with ``folder=None``: the SD 1.5 architectures from :mod:`core.sd15`'s configurations, randomly
  initialised; on the ``meta`` device this is the paper-scale model without memory (the parameter
  counts and memory estimate of ``bench.paper_scale``).

The single-component builders (:func:`build_denoising_unet`, ...) are what ``build_components`` uses;
they exist for tools that need one component in a special context (fake tensors, a dtype).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.sd15 import verify_sd15_folder
from model.conditioning import ConditioningParams


@dataclass(frozen=True)
class UNetParams:
    """``model.unet``: the DenoisingUNet's added-attention token sizes (its backbone is SD 1.5's)."""

    audio_dim: int = 768  # = model.audio_proj.output_dim
    emotion_dim: int = 768  # = model.emotion_embed.output_dim


@dataclass(frozen=True)
class AudioProjParams:
    """``model.audio_proj``: AudioProjection (wav2vec2 hidden states -> per-frame audio tokens)."""

    num_layers: int = 13  # wav2vec2-base hidden states per frame (feature projection + 12 layers)
    feature_dim: int = 768
    context_frames: int = 2  # = data.audio_context
    hidden_dim: int = 1024
    num_tokens: int = 32
    output_dim: int = 768


@dataclass(frozen=True)
class EmotionEmbedParams:
    """``model.emotion_embed``: EmotionEmbedding (eq. 1: concat(E_t, E_ser, E_va) -> tokens)."""

    text_dim: int = 7  # text-emotion classes (emotion-english-distilroberta)
    ser_dim: int = 4  # speech-emotion classes
    va_segments: int = 8  # K: E_va resampled to K segments (fit_segments)
    va_dim: int = 2  # valence, arousal
    hidden_dim: int = 512
    num_tokens: int = 4
    output_dim: int = 768


@dataclass(frozen=True)
class ImageProjParams:
    """``model.image_proj``: ImageProjection (the reference image's CLIP image embedding, added to the
    cross-attention context through a zero-initialised projection; :mod:`model.image_proj`)."""

    enabled: bool = True  # false: no CLIP image path (samples then need no reference_image_embed)
    in_dim: int = 768  # CLIP ViT-L/14 projected embedding (the clip_image sidecar's width; 16 for the tiny stand-in)
    tokens: int = 1  # context positions the image is added to, from BOS


@dataclass(frozen=True)
class VPFlowParams:
    """``model.a2m.flow``: the A2M's volume-preserving flow (its channels are ``z_channels``, its
    condition the A2M's ``cond_dim``)."""

    hidden_channels: int = 64
    num_flows: int = 4
    layers_per_coupling: int = 2
    kernel_size: int = 3


@dataclass(frozen=True)
class A2MParams:
    """``model.a2m``: the audio-to-motion VP-flow VAE (3.5)."""

    latent_channels: int = 4
    motion_frames: int = 2  # = data.motion_frames
    audio_layers: int = 13  # = model.audio_proj.num_layers (the same wav2vec2 states)
    audio_dim: int = 768  # = model.audio_proj.feature_dim
    cond_dim: int = 256
    hidden_channels: int = 128
    num_downsamples: int = 2
    z_channels: int = 8
    norm_num_groups: int = 32
    flow: VPFlowParams = field(default_factory=VPFlowParams)

    def kwargs(self) -> dict[str, Any]:
        """``A2M`` init arguments (the flow's as ``flow_*``)."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "flow"}
        return {**own, **{f"flow_{k}": v for k, v in dataclasses.asdict(self.flow).items()}}


@dataclass(frozen=True)
class ModelParams:
    """``model`` section of params.yaml."""

    unet: UNetParams = field(default_factory=UNetParams)
    audio_proj: AudioProjParams = field(default_factory=AudioProjParams)
    emotion_embed: EmotionEmbedParams = field(default_factory=EmotionEmbedParams)
    a2m: A2MParams = field(default_factory=A2MParams)
    image_proj: ImageProjParams = field(default_factory=ImageProjParams)
    conditioning: ConditioningParams = field(default_factory=ConditioningParams)

    def __post_init__(self) -> None:
        pairs = [
            ("unet.audio_dim", self.unet.audio_dim, "audio_proj.output_dim", self.audio_proj.output_dim),
            ("unet.emotion_dim", self.unet.emotion_dim, "emotion_embed.output_dim", self.emotion_embed.output_dim),
            ("a2m.audio_layers", self.a2m.audio_layers, "audio_proj.num_layers", self.audio_proj.num_layers),
            ("a2m.audio_dim", self.a2m.audio_dim, "audio_proj.feature_dim", self.audio_proj.feature_dim),
        ]
        for a, va, b, vb in pairs:
            if va != vb:
                raise ValueError(f"model.{a} ({va}) must equal model.{b} ({vb})")


def check_data(model: ModelParams, data: Any) -> None:
    """The ``model`` and ``data`` sections agree (``data`` is a :class:`model.data.DataParams`)."""
    pairs = [("model.audio_proj.context_frames", model.audio_proj.context_frames, "data.audio_context", data.audio_context),
             ("model.a2m.motion_frames", model.a2m.motion_frames, "data.motion_frames", data.motion_frames)]
    for a, va, b, vb in pairs:
        if va != vb:
            raise ValueError(f"{a} ({va}) must equal {b} ({vb})")


def load_params(path: Path | str | None = None) -> ModelParams:
    """The ``model`` section of params.yaml."""
    from core import params

    return params.load(ModelParams, "model", path)


# -- single components ----------------------------------------------------------------------------
def build_denoising_unet(params: ModelParams, backbone: dict[str, Any] | None = None):
    """A new DenoisingUNet (``backbone``: UNet2DConditionModel init arguments; None: SD 1.5's)."""
    from model.unet import DenoisingUNet

    return DenoisingUNet(backbone=backbone, **dataclasses.asdict(params.unet))


def build_reference_net(backbone: dict[str, Any] | None = None):
    from model.reference_net import ReferenceNet

    return ReferenceNet(backbone=backbone)


def build_audio_proj(params: ModelParams):
    from model.audio_proj import AudioProjection

    return AudioProjection(**dataclasses.asdict(params.audio_proj))


def build_emotion_embed(params: ModelParams):
    from model.emotion_embed import EmotionEmbedding

    return EmotionEmbedding(**dataclasses.asdict(params.emotion_embed))


def build_a2m(params: ModelParams):
    from model.a2m import A2M

    return A2M(**params.a2m.kwargs())


def build_image_proj(params: ModelParams, cross_attention_dim: int = 768):
    """The ImageProjection (None when ``model.image_proj.enabled`` is false)."""
    if not params.image_proj.enabled:
        return None
    from model.image_proj import ImageProjection

    return ImageProjection(in_dim=params.image_proj.in_dim, cross_attention_dim=cross_attention_dim,
                           tokens=params.image_proj.tokens)


def build_vae():
    """The SD 1.5 VAE architecture (:data:`core.sd15.SD15_VAE_CONFIG`), randomly initialised."""
    from diffusers import AutoencoderKL

    from core.sd15 import SD15_VAE_CONFIG

    return AutoencoderKL(**SD15_VAE_CONFIG)


def build_text_encoder():
    """The CLIP ViT-L/14 text encoder architecture of SD 1.5, randomly initialised."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from core.sd15 import CLIP_L14_TEXT_CONFIG

    return CLIPTextModel(CLIPTextConfig(**CLIP_L14_TEXT_CONFIG))


# -- all of them ----------------------------------------------------------------------------------
@dataclass
class Components:
    """Every component: the trainable networks and the frozen SD 1.5 parts."""

    unet: Any  # model.unet.DenoisingUNet
    reference_net: Any  # model.reference_net.ReferenceNet
    audio_proj: Any  # model.audio_proj.AudioProjection
    emotion_embed: Any  # model.emotion_embed.EmotionEmbedding
    a2m: Any  # model.a2m.A2M
    vae: Any  # diffusers.AutoencoderKL
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any = None  # transformers.CLIPTokenizer (None without an SD 1.5 folder)
    image_proj: Any = None  # model.image_proj.ImageProjection (None with model.image_proj.enabled false)

    def modules(self) -> dict[str, Any]:
        """The networks by name: the keywords of :func:`model.stages.set_stage` (``image_proj`` when built)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "tokenizer" and getattr(self, f.name) is not None}


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_components(folder: str | Path | None, params: ModelParams | None = None, device: Any = "cpu",
                     seed: int | None = None) -> Components:
    """Every component, on ``device``.

    ``folder``: a local SD 1.5 folder: the DenoisingUNet and ReferenceNet start from its ``unet/``
    (added modules new), VAE, text encoder and tokenizer are loaded from it. ``None``: the SD 1.5
    architectures without weights (random init; ``device="meta"`` allocates nothing). The other
    components are built from ``params`` (default: paper scale). ``seed`` makes the random
    initialisation reproducible without touching the global RNG.
    """
    import torch

    params = params or ModelParams()
    device = torch.device(device)
    if folder is None:
        with _seeded(seed), torch.device(device):
            return Components(
                unet=build_denoising_unet(params), reference_net=build_reference_net(), audio_proj=build_audio_proj(params),
                emotion_embed=build_emotion_embed(params), a2m=build_a2m(params), vae=build_vae(),
                text_encoder=build_text_encoder(), image_proj=build_image_proj(params))
    if device.type == "meta":
        raise ValueError("weights cannot be loaded onto the meta device: pass folder=None for the architecture alone")
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from model.reference_net import ReferenceNet
    from model.unet import DenoisingUNet

    root = verify_sd15_folder(folder)
    with _seeded(seed):
        base = UNet2DConditionModel.from_pretrained(str(root / "unet"), local_files_only=True)
        unet = DenoisingUNet.from_base(base, **dataclasses.asdict(params.unet))
        reference_net = ReferenceNet.from_base(base)
        del base
        components = Components(
            unet=unet, reference_net=reference_net, audio_proj=build_audio_proj(params),
            emotion_embed=build_emotion_embed(params), a2m=build_a2m(params),
            vae=AutoencoderKL.from_pretrained(str(root / "vae"), local_files_only=True),
            text_encoder=CLIPTextModel.from_pretrained(str(root / "text_encoder"), local_files_only=True),
            tokenizer=CLIPTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True),
            image_proj=build_image_proj(params, unet.unet.config.cross_attention_dim))
    if device.type != "cpu":
        for module in components.modules().values():
            module.to(device)
    return components
