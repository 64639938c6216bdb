"""Which parameters each training stage optimises (paper section 4, DESIGN section 6).

- ``stage1``: ReferenceNet and the spatial denoising UNet (the SD 1.5 weights of the UNet: every
  parameter that is not in an added temporal/audio/emotion module), and the ImageProjection of the
  reference image's CLIP embedding (figure 2a). Trained on a target frame with its reference image
  and motion frames. (Stage 2 keeps the ImageProjection frozen.)
- ``stage2``: the audio modules (``AudioProjection`` and every block's ``AudioAttention``), the
  temporal modules (``TemporalAttention``) and the emotion modules (``EmotionEmbedding`` and every
  block's ``EmotionAttention``). Trained on 14-frame clips.
- ``a2m``: the A2M module (its VAE and VP-flow).

The SD VAE and the CLIP text encoder are frozen in every stage. ReferenceNet parameters that cannot
influence its features (``ReferenceNet.unused_parameter_names``) stay frozen too, so that every
trainable parameter receives a gradient.
"""

from __future__ import annotations

from torch import nn

STAGES = ("stage1", "stage2", "a2m")


def _added_parameter_ids(unet: nn.Module, kinds: tuple[str, ...]) -> set[int]:
    return {id(p) for kind in kinds for module in unet.added_modules(kind) for p in module.parameters()}


def set_stage(
    stage: str,
    *,
    unet: nn.Module | None = None,
    reference_net: nn.Module | None = None,
    audio_proj: nn.Module | None = None,
    emotion_embed: nn.Module | None = None,
    a2m: nn.Module | None = None,
    image_proj: nn.Module | None = None,
    vae: nn.Module | None = None,
    text_encoder: nn.Module | None = None,
) -> list[nn.Parameter]:
    """Set ``requires_grad`` of every given component for ``stage`` and return the trainable
    parameters (for the optimiser). Components not given are left alone."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    for module in (unet, reference_net, audio_proj, emotion_embed, a2m, image_proj, vae, text_encoder):
        if module is not None:
            module.requires_grad_(False)

    trainable: list[nn.Parameter] = []
    if stage == "stage1":
        if unet is not None:
            added = _added_parameter_ids(unet, ("temporal", "audio", "emotion"))
            trainable += [p for p in unet.parameters() if id(p) not in added]
        if reference_net is not None:
            unused = set(reference_net.unused_parameter_names())
            trainable += [p for n, p in reference_net.named_parameters() if n not in unused]
        if image_proj is not None:
            trainable += list(image_proj.parameters())
    elif stage == "stage2":
        if unet is not None:
            added = _added_parameter_ids(unet, ("temporal", "audio", "emotion"))
            trainable += [p for p in unet.parameters() if id(p) in added]
        for module in (audio_proj, emotion_embed):
            if module is not None:
                trainable += list(module.parameters())
    else:  # a2m
        if a2m is not None:
            trainable += list(a2m.parameters())

    if not trainable:
        raise ValueError(f"{stage}: none of the given components is trained in this stage")
    for p in trainable:
        p.requires_grad_(True)
    return trainable
