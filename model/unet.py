"""The denoising UNet: SD 1.5 with four attentions per transformer block (paper section 3.2).

``DenoisingUNet`` holds a diffusers ``UNet2DConditionModel`` (``self.unet``, the SD 1.5 backbone,
unchanged) and installs in each of its transformer blocks the processors of ``model.attention``:

    attn1 -> SpatialTemporalAttnProcessor   spatial attention with ReferenceNet keys/values (3.2, 3.3)
                                            + temporal attention over [motion frames, frames]   (3.2)
    attn2 -> CrossAudioEmotionAttnProcessor cross-attention to the text context and emotion tokens
                                            (3.4, 3.6 eq. 1) + audio attention                  (3.2)

Video input ``(B, C, F, H, W)`` is run as ``B * F`` images (frame-major inside each video); the
temporal attention regroups the frames. Motion frames always enter the same way, in training and
in inference: as ReferenceNet tokens (``reference_features[...][:, 1:]``), attended by the spatial
attention and prepended on the temporal axis.

Added modules start with zero output projections: given no reference, audio or emotion signal (or
with audio/emotion but untrained added modules) each frame's output equals SD 1.5's
``UNet2DConditionModel`` output for that frame (tested in ``tests/model/test_unet.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from .attention import (
    FRAME_CONDITIONS_KWARG,
    AudioAttention,
    CrossAudioEmotionAttnProcessor,
    EmotionAttention,
    FrameConditions,
    SpatialTemporalAttnProcessor,
    TemporalAttention,
    attention_sizes,
    transformer_blocks,
)
from core.sd15 import SD15_UNET_CONFIG, backbone_config

# Added-module kinds, by class: used by ``model.stages`` to choose what each stage trains.
ADDED_MODULE_TYPES: dict[str, type] = {
    "temporal": TemporalAttention,
    "audio": AudioAttention,
    "emotion": EmotionAttention,
}


#: diffusers calls that replace every attention processor (or fuse q/k/v) and so silently drop the added
#: reference/temporal/audio/emotion attentions of the DenoisingUNet (DESIGN 6).
PROCESSOR_REPLACING_CALLS = ("set_attn_processor", "set_default_attn_processor", "fuse_qkv_projections",
                             "unfuse_qkv_projections", "enable_xformers_memory_efficient_attention")


def _refuse(self: Any, *args: Any, **kwargs: Any) -> None:
    raise RuntimeError(f"{type(self).__name__}: diffusers' processor-replacing calls ({', '.join(PROCESSOR_REPLACING_CALLS)}) "
                       "would silently drop the added reference/temporal/audio/emotion attentions of the DenoisingUNet; "
                       "set a processor on one Attention with Attention.set_processor, keeping the model.attention "
                       "processors (DESIGN 6)")


class BackboneUNet(UNet2DConditionModel):
    """The DenoisingUNet's SD 1.5 backbone: ``UNet2DConditionModel`` refusing the calls that replace its
    attention processors (:data:`PROCESSOR_REPLACING_CALLS`)."""

    set_attn_processor = set_default_attn_processor = fuse_qkv_projections = unfuse_qkv_projections = _refuse
    enable_xformers_memory_efficient_attention = _refuse


@dataclass
class DenoisingUNetOutput(BaseOutput):
    """``sample``: ``(B, C, F, H, W)``, the prediction (epsilon or v) for every frame."""

    sample: torch.Tensor


class DenoisingUNet(ModelMixin, ConfigMixin):
    """SD 1.5 UNet with spatial (+reference), cross (text + emotion), audio and temporal attention.

    Args:
        backbone: ``UNet2DConditionModel`` init arguments; None means the SD 1.5 configuration.
            ``from_sd15`` / ``from_base`` take it from the SD folder.
        audio_dim: channels of the audio tokens (``AudioProjection.output_dim``).
        emotion_dim: channels of the emotion tokens (``EmotionEmbedding.output_dim``).
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, backbone: dict[str, Any] | None = None, audio_dim: int = 768, emotion_dim: int = 768):
        super().__init__()
        backbone = dict(SD15_UNET_CONFIG if backbone is None else backbone)
        self.register_to_config(backbone=backbone)
        self.unet = BackboneUNet(**backbone)
        blocks = transformer_blocks(self.unet)
        if not blocks:
            raise ValueError("backbone has no transformer blocks (no CrossAttn* blocks)")
        for name, block in blocks:
            if block.attn2 is None:
                raise ValueError(f"transformer block {name} has no cross-attention")
            dim, heads, dim_head = attention_sizes(block.attn1)
            block.attn1.set_processor(SpatialTemporalAttnProcessor(name, dim, heads, dim_head))
            block.attn2.set_processor(CrossAudioEmotionAttnProcessor(name, dim, heads, dim_head, audio_dim, emotion_dim))

    # the same calls on the wrapper refuse too (they would reach the backbone's processors)
    set_attn_processor = set_default_attn_processor = fuse_qkv_projections = unfuse_qkv_projections = _refuse
    enable_xformers_memory_efficient_attention = _refuse

    # ----------------------------------------------------------------------------------- building
    @classmethod
    def from_base(cls, base: UNet2DConditionModel, **kwargs: Any) -> "DenoisingUNet":
        """Build from a loaded SD ``UNet2DConditionModel``: its config and weights, added modules new.

        The emotion attention's query/key/value start as copies of the block's text cross-attention
        (as decoupled cross-attention is usually started) when their shapes agree; its output
        projection, like those of the audio and temporal attentions, starts at zero.
        """
        model = cls(backbone=backbone_config(base.config), **kwargs)
        missing, unexpected = model.unet.load_state_dict(base.state_dict(), strict=False)
        added = {n for n in missing if ".processor." in n}
        if unexpected or set(missing) - added:
            raise ValueError(
                f"base UNet does not match the backbone: missing {sorted(set(missing) - added)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        with torch.no_grad():
            for _, block in transformer_blocks(model.unet):
                emotion = block.attn2.processor.emotion.attn
                for proj in ("to_q", "to_k", "to_v"):
                    src, dst = getattr(block.attn2, proj), getattr(emotion, proj)
                    if src.weight.shape == dst.weight.shape:
                        dst.weight.copy_(src.weight)
        return model if base.dtype == torch.float32 else model.to(dtype=base.dtype)

    @classmethod
    def from_sd15(cls, sd15_folder: str | Path, **kwargs: Any) -> "DenoisingUNet":
        """Build from the ``unet/`` of a local diffusers SD 1.5 folder (see ``core.sd15``)."""
        from core.sd15 import verify_sd15_folder

        root = verify_sd15_folder(sd15_folder)
        base = UNet2DConditionModel.from_pretrained(str(root / "unet"), local_files_only=True)
        return cls.from_base(base, **kwargs)

    # ----------------------------------------------------------------------------------- structure
    def added_modules(self, kind: str) -> list[torch.nn.Module]:
        """The added modules of one kind (``temporal``, ``audio``, ``emotion``), one per block."""
        module_type = ADDED_MODULE_TYPES[kind]
        return [m for m in self.modules() if isinstance(m, module_type)]

    def block_names(self) -> list[str]:
        """Transformer block names: the keys of ``reference_features``."""
        return [name for name, _ in transformer_blocks(self.unet)]

    # ----------------------------------------------------------------------------------- forward
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        reference_features: dict[str, torch.Tensor] | None = None,
        audio_tokens: torch.Tensor | None = None,
        emotion_tokens: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DenoisingUNetOutput | tuple[torch.Tensor]:
        """Predict the noise (or v) of every frame.

        Args:
            sample: ``(B, C, F, H, W)`` noisy latents of F frames.
            timestep: scalar or ``(B,)`` diffusion timesteps (shared by a video's frames).
            encoder_hidden_states: ``(B, L, D)`` context: CLIP text states of the caption (3.4).
            reference_features: ``ReferenceNet`` output features, block name ->
                ``(B, 1 + M, L_i, C_i)`` (reference image, then M motion frames).
            audio_tokens: ``(B, F, T_a, audio_dim)`` per-frame audio tokens (``AudioProjection``).
            emotion_tokens: ``(B, N, emotion_dim)`` emotion tokens (``EmotionEmbedding``, eq. 1).

        Returns:
            ``DenoisingUNetOutput(sample=(B, C, F, H, W))``.
        """
        if sample.ndim != 5:
            raise ValueError(f"sample must be (B, C, F, H, W), got {tuple(sample.shape)}")
        batch, channels, frames, height, width = sample.shape
        images = sample.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)

        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        if timestep.shape != (batch,):
            raise ValueError(f"timestep must be a scalar or (B,)={batch}, got {tuple(timestep.shape)}")
        timestep = timestep.repeat_interleave(frames)

        if encoder_hidden_states.shape[0] != batch:
            raise ValueError(f"encoder_hidden_states batch {encoder_hidden_states.shape[0]} != B={batch}")
        context = encoder_hidden_states.repeat_interleave(frames, dim=0)

        if audio_tokens is not None:
            if audio_tokens.ndim != 4 or audio_tokens.shape[:2] != (batch, frames):
                raise ValueError(f"audio_tokens must be (B={batch}, F={frames}, T, D), got {tuple(audio_tokens.shape)}")
            audio_tokens = audio_tokens.reshape(batch * frames, *audio_tokens.shape[2:])
        if emotion_tokens is not None:
            if emotion_tokens.ndim != 3 or emotion_tokens.shape[0] != batch:
                raise ValueError(f"emotion_tokens must be (B={batch}, N, D), got {tuple(emotion_tokens.shape)}")
            emotion_tokens = emotion_tokens.repeat_interleave(frames, dim=0)

        conditions = FrameConditions(
            num_frames=frames, reference=reference_features, audio_tokens=audio_tokens, emotion_tokens=emotion_tokens
        )
        out = self.unet(
            images, timestep, context, cross_attention_kwargs={FRAME_CONDITIONS_KWARG: conditions}
        ).sample
        out = out.reshape(batch, frames, *out.shape[1:]).permute(0, 2, 1, 3, 4)
        if not return_dict:
            return (out,)
        return DenoisingUNetOutput(sample=out)
