"""ReferenceNet (paper section 3.3): the SD 1.5 UNet encoding the reference image and motion frames.

The same backbone as the denoising UNet. It runs once per video, at timestep 0, on the clean VAE
latents of the reference image and of the M motion frames (``R = 1 + M`` images per video), with the
CLIP text states of the video description in its cross-attention (3.4). Each transformer block's
spatial-attention input (``norm1`` output, ``(B * R, L_i, C_i)``) is recorded and returned
explicitly, keyed by the block's name, as ``(B, R, L_i, C_i)``: the keys/values that the denoising
UNet's spatial attention adds (reference and motion frames) and the motion tokens its temporal
attention prepends.

The blocks after the last recorded input (the rest of the last transformer block, its ``proj_out``
and the UNet's output convolution) do not influence the features; ``unused_parameter_names`` lists
them so that training freezes them (no parameter is then trainable without a gradient).
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

from .attention import FEATURE_SINK_KWARG, ReferenceFeatureAttnProcessor, transformer_blocks
from core.sd15 import SD15_UNET_CONFIG, backbone_config


@dataclass
class ReferenceNetOutput(BaseOutput):
    """``features``: block name -> ``(B, 1 + M, L_i, C_i)`` tokens (reference image first)."""

    features: dict[str, torch.Tensor]


class ReferenceNet(ModelMixin, ConfigMixin):
    """SD 1.5 UNet returning its per-block spatial-attention inputs.

    Args:
        backbone: ``UNet2DConditionModel`` init arguments; None means the SD 1.5 configuration.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, backbone: dict[str, Any] | None = None):
        super().__init__()
        backbone = dict(SD15_UNET_CONFIG if backbone is None else backbone)
        self.register_to_config(backbone=backbone)
        self.unet = UNet2DConditionModel(**backbone)
        blocks = transformer_blocks(self.unet)
        if not blocks:
            raise ValueError("backbone has no transformer blocks (no CrossAttn* blocks)")
        for name, block in blocks:
            block.attn1.set_processor(ReferenceFeatureAttnProcessor(name))
            if block.attn2 is not None:
                block.attn2.set_processor(ReferenceFeatureAttnProcessor(None))

    @classmethod
    def from_base(cls, base: UNet2DConditionModel) -> "ReferenceNet":
        """Build from a loaded SD ``UNet2DConditionModel`` (config and all weights)."""
        model = cls(backbone=backbone_config(base.config))
        model.unet.load_state_dict(base.state_dict(), strict=True)
        return model if base.dtype == torch.float32 else model.to(dtype=base.dtype)

    @classmethod
    def from_sd15(cls, sd15_folder: str | Path) -> "ReferenceNet":
        """Build from the ``unet/`` of a local diffusers SD 1.5 folder (see ``core.sd15``)."""
        from core.sd15 import verify_sd15_folder

        root = verify_sd15_folder(sd15_folder)
        base = UNet2DConditionModel.from_pretrained(str(root / "unet"), local_files_only=True)
        return cls.from_base(base)

    def block_names(self) -> list[str]:
        return [name for name, _ in transformer_blocks(self.unet)]

    def unused_parameter_names(self) -> list[str]:
        """Parameters that cannot affect the returned features: everything of the last transformer
        block (in forward order) after its ``norm1``, its ``Transformer2DModel.proj_out``, and
        ``conv_norm_out`` / ``conv_out``. Requires the last up block to end in attention (SD layout)."""
        last_up = self.unet.up_blocks[-1]
        prefixes = ["unet.conv_norm_out.", "unet.conv_out."]
        if getattr(last_up, "attentions", None) is not None and len(last_up.attentions) > 0:
            n_up = len(self.unet.up_blocks) - 1
            n_attn = len(last_up.attentions) - 1
            transformer = last_up.attentions[n_attn]
            n_blk = len(transformer.transformer_blocks) - 1
            stem = f"unet.up_blocks.{n_up}.attentions.{n_attn}"
            prefixes.append(f"{stem}.proj_out.")
            for part in ("attn1", "norm2", "attn2", "norm3", "ff"):
                prefixes.append(f"{stem}.transformer_blocks.{n_blk}.{part}.")
        else:
            raise ValueError("unused_parameter_names needs the SD layout (last up block with attention)")
        return [n for n, _ in self.named_parameters() if n.startswith(tuple(prefixes))]

    def forward(
        self,
        reference_latents: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        motion_latents: torch.Tensor | None = None,
        timestep: torch.Tensor | float | int = 0,
        return_dict: bool = True,
    ) -> ReferenceNetOutput | tuple[dict[str, torch.Tensor]]:
        """Encode reference image (+ motion frames).

        Args:
            reference_latents: ``(B, C, H, W)`` VAE latents (scaled) of the reference image.
            encoder_hidden_states: ``(B, L, D)`` CLIP text states of the video description.
            motion_latents: ``(B, C, M, H, W)`` VAE latents of M motion frames, or None (M = 0).
            timestep: 0 (clean latents) by default.

        Returns:
            ``ReferenceNetOutput(features={block: (B, 1 + M, L_i, C_i)})``.
        """
        if reference_latents.ndim != 4:
            raise ValueError(f"reference_latents must be (B, C, H, W), got {tuple(reference_latents.shape)}")
        batch = reference_latents.shape[0]
        images = reference_latents[:, None]
        if motion_latents is not None:
            if motion_latents.ndim != 5 or motion_latents.shape[0] != batch or (
                motion_latents.shape[1:2] + motion_latents.shape[3:] != reference_latents.shape[1:]
            ):
                raise ValueError(
                    f"motion_latents must be (B, C, M, H, W) matching {tuple(reference_latents.shape)}, "
                    f"got {tuple(motion_latents.shape)}"
                )
            images = torch.cat([images, motion_latents.permute(0, 2, 1, 3, 4)], dim=1)
        num_ref = images.shape[1]
        images = images.reshape(batch * num_ref, *images.shape[2:])
        if encoder_hidden_states.shape[0] != batch:
            raise ValueError(f"encoder_hidden_states batch {encoder_hidden_states.shape[0]} != B={batch}")
        context = encoder_hidden_states.repeat_interleave(num_ref, dim=0)
        timestep = torch.as_tensor(timestep, device=images.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        timestep = timestep.repeat_interleave(num_ref)

        sink: dict[str, torch.Tensor] = {}
        self.unet(images, timestep, context, cross_attention_kwargs={FEATURE_SINK_KWARG: sink})
        features = {name: t.reshape(batch, num_ref, *t.shape[1:]) for name, t in sink.items()}
        if not return_dict:
            return (features,)
        return ReferenceNetOutput(features=features)
