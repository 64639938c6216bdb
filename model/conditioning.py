"""Batch -> the conditions of the DenoisingUNet and the ReferenceNet, shared by training and inference.

One place turns a loader batch (:mod:`model.data`) into what the networks take (DESIGN 6):

    text_states        (B, L, D)          caption's CLIP text states, the cross-attention context of
                                          both networks (3.4), plus the reference image's CLIP image
                                          tokens (figure 2a; ``image_proj``, :mod:`model.image_proj`:
                                          ``reference_image_embed`` (B, P) -> added to the first positions)
    reference_latents  (B, C, h, w)       VAE latent of the reference image   } ReferenceNet input:
    motion_latents     (B, C, M, h, w)    VAE latents of the M motion frames  } its features go to the UNet
    audio_tokens       (B, T, T_a, D_a)   AudioProjection of the ``audio_embed`` window (T + 2c frames of
                                          wav2vec2 states), rows c .. c+T-1: the tokens of the T frames
    emotion_tokens     (B, N, D_e)        EmotionEmbedding of (E_t, E_ser, E_va), eq. 1; E_va is the
                                          window's per-frame valence/arousal resampled to K segments

Classifier-free guidance: each condition is dropped per sample with its own probability
(:class:`ConditioningParams`), drawn from a generator in a fixed order, and a dropped condition is
replaced by a REAL null, the same at training and at inference:

- reference: zero latents, for the reference image AND the motion frames. Both enter as ReferenceNet
  tokens; identity would leak through motion frames kept alone, so they form one appearance condition.
  The reference image's CLIP image tokens belong to it too: dropped, they are exactly zero (not the
  projection of a zero embedding, which would be its LayerNorm/Linear bias), so the context is the
  text states alone, as in SD 1.5.
- caption: the text states of the empty string (:func:`empty_text_states`, computed as the caption
  extractor computes the captions' states: 77 tokens, padded), passed in by the caller.
- audio: zero TOKENS, not zero wav2vec2 states. Zero states go through AudioProjection's MLP and
  LayerNorm and come out as weight-dependent tokens that drift during training and that the model
  cannot tell from real (silent) audio. Zero tokens are independent of the input and of
  AudioProjection: the audio attention's keys and values are bias-free projections, so every dropped
  sample gets exactly the attention's output bias (zero at initialisation: the added module then
  contributes nothing, as without audio), and no gradient reaches AudioProjection from it. A learned
  null token would add a parameter to AudioProjection for no gain: the output bias already is one.
- emotion: the EmotionEmbedding's learned null embedding; the drop mask is always passed (all False
  when nothing is dropped), so the null is trained and inference uses the same path.

Inference passes explicit masks (:func:`fixed_masks`): none dropped for the conditional branch, the
guided conditions dropped for the unconditional one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

CONDITIONS = ("reference", "caption", "audio", "emotion")


@dataclass(frozen=True)
class ConditioningParams:
    """``model.conditioning``: classifier-free-guidance dropout probability of each condition, per
    sample and independently (training only). The paper gives none; 0.05 each is the common choice
    of the reference-net talking-head trainers (Hallo, EMO-style)."""

    drop_reference: float = 0.05  # reference image + motion frames -> zero latents
    drop_caption: float = 0.05  # caption text states -> the empty string's
    drop_audio: float = 0.05  # audio tokens -> zero tokens
    drop_emotion: float = 0.05  # emotion tokens -> EmotionEmbedding's learned null

    def __post_init__(self) -> None:
        for kind in CONDITIONS:
            p = self.probability(kind)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"drop_{kind} must be in [0, 1], got {p}")

    def probability(self, kind: str) -> float:
        return float(getattr(self, f"drop_{kind}"))


# -- drop masks -----------------------------------------------------------------------------------
def drop_masks(batch_size: int, params: ConditioningParams, generator: torch.Generator | None = None,
               device: Any = None) -> dict[str, torch.Tensor]:
    """``{condition: (B,) bool}``, True where the condition is dropped. One draw per condition in the
    order of :data:`CONDITIONS` (always all four, so the masks of a seed do not depend on which
    conditions a stage uses), on the generator's device, then moved to ``device``."""
    from model.emotion_embed import cfg_drop_mask

    where = generator.device if generator is not None else None
    return {kind: cfg_drop_mask(batch_size, params.probability(kind), generator, device=where).to(device)
            for kind in CONDITIONS}


def fixed_masks(batch_size: int, dropped: Iterable[str] = (), device: Any = None) -> dict[str, torch.Tensor]:
    """Masks with the conditions in ``dropped`` dropped for every sample, the others kept (inference:
    ``fixed_masks(B)`` is the conditional branch, ``fixed_masks(B, CONDITIONS)`` the unconditional one)."""
    dropped = set(dropped)
    unknown = dropped - set(CONDITIONS)
    if unknown:
        raise ValueError(f"unknown condition {min(unknown)!r} (conditions: {', '.join(CONDITIONS)})")
    return {kind: torch.full((batch_size,), kind in dropped, dtype=torch.bool, device=device) for kind in CONDITIONS}


# -- pieces ---------------------------------------------------------------------------------------
@torch.no_grad()
def encode_latents(vae: Any, pixels: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False) -> torch.Tensor:
    """Scaled VAE latents of frames: ``(B, 3, S, S) -> (B, C, h, w)``, ``(B, N, 3, S, S) -> (B, C, N, h, w)``.

    uint8 or float frames (:func:`model.data.model_pixels`); the posterior mean, or a sample of it
    (``sample=True``). The VAE is frozen in every stage: no graph is kept."""
    from model.data.pixels import model_pixels

    param = next(vae.parameters())
    images = model_pixels(pixels.to(param.device)).to(param.dtype)
    video = images.ndim == 5
    if video:
        batch, frames = images.shape[:2]
        images = images.reshape(batch * frames, *images.shape[2:])
    dist = vae.encode(images).latent_dist
    latents = (dist.sample(generator) if sample else dist.mean) * vae.config.scaling_factor
    if video:
        latents = latents.reshape(batch, frames, *latents.shape[1:]).transpose(1, 2)
    return latents


@torch.no_grad()
def empty_text_states(text_encoder: Any, tokenizer: Any, length: int = 77) -> torch.Tensor:
    """The caption null: CLIP text states of the empty string ``(1, length, D)``, padded to ``length``
    tokens as the caption extractor pads the captions."""
    ids = tokenizer([""], padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    return text_encoder(input_ids=ids.to(text_encoder.device)).last_hidden_state


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.to(like.device).reshape(-1, *([1] * (like.ndim - 1)))


@dataclass
class Conditions:
    """The conditions of one batch (see the module docstring) and the drop masks they were built with."""

    text_states: torch.Tensor
    reference_latents: torch.Tensor
    motion_latents: torch.Tensor | None
    audio_tokens: torch.Tensor | None
    emotion_tokens: torch.Tensor | None
    drop: dict[str, torch.Tensor]

    def reference_net_inputs(self) -> dict[str, Any]:
        """Keyword arguments of ``ReferenceNet.forward``."""
        return {"reference_latents": self.reference_latents, "encoder_hidden_states": self.text_states,
                "motion_latents": self.motion_latents}

    def unet_inputs(self, reference_features: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        """Keyword arguments of ``DenoisingUNet.forward`` besides the noisy sample and the timestep."""
        return {"encoder_hidden_states": self.text_states, "reference_features": reference_features,
                "audio_tokens": self.audio_tokens, "emotion_tokens": self.emotion_tokens}


def build_conditions(batch: dict[str, Any], *, null_text_states: torch.Tensor, vae: Any = None, audio_proj: Any = None,
                     emotion_embed: Any = None, params: ConditioningParams | None = None,
                     drop: dict[str, torch.Tensor] | None = None, generator: torch.Generator | None = None,
                     reference_latents: torch.Tensor | None = None, motion_latents: torch.Tensor | None = None,
                     device: Any = None, dtype: torch.dtype | None = None, image_proj: Any = None) -> Conditions:
    """The conditions of a loader batch, with classifier-free-guidance dropout.

    ``null_text_states``: :func:`empty_text_states` (``(1, L, D)`` or ``(L, D)``); also the context of
    every sample when the batch has no ``text_states`` (no caption feature). ``vae`` encodes
    ``reference`` and ``motion_frames`` unless their latents are given (a latent cache, or A2M
    motion frames: ``data`` motion ``gt | a2m | mix`` is the trainer's choice). Audio tokens are built
    when ``audio_proj`` is given (the batch must hold ``audio_embed``), emotion tokens when
    ``emotion_embed`` is (``text_emotion``, ``speech_emotion``, ``valence_arousal``): stage 1 passes
    neither. ``image_proj`` (:class:`model.image_proj.ImageProjection`) adds the reference image's CLIP
    tokens of ``batch["reference_image_embed"]`` ``(B, P)`` to the text states (zero where the reference
    is dropped). ``drop``: explicit masks (inference, :func:`fixed_masks`); otherwise drawn from
    ``generator`` with ``params``' probabilities. ``dtype`` applies to text states and latents.
    """
    params = params or ConditioningParams()
    if reference_latents is None:
        if vae is None:
            raise ValueError("build_conditions needs a vae or reference_latents")
        reference_latents = encode_latents(vae, batch["reference"])
    device = torch.device(device) if device is not None else reference_latents.device
    reference_latents = reference_latents.to(device, dtype)
    batch_size = reference_latents.shape[0]
    if drop is None:
        drop = drop_masks(batch_size, params, generator, device)
    drop = {k: v.to(device) for k, v in drop.items()}
    for kind in CONDITIONS:
        if kind not in drop or drop[kind].shape != (batch_size,) or drop[kind].dtype != torch.bool:
            raise ValueError(f"drop[{kind!r}] must be a (B,)={batch_size} bool mask")

    # caption: the empty string's states where dropped
    null = null_text_states.to(device, dtype)
    null = null if null.ndim == 3 else null[None]
    text = batch.get("text_states")
    if text is None:
        text = null.expand(batch_size, -1, -1)
    else:
        text = text.to(device, dtype)
        if text.shape[1:] != null.shape[1:]:
            raise ValueError(f"text_states {tuple(text.shape)} and the empty-string states {tuple(null.shape)} differ: "
                             f"compute the null with the caption's text encoder and length")
        text = torch.where(_rows(drop["caption"], text), null, text)
    if image_proj is not None:
        text = image_proj.add_to(text, _image_tokens(batch, image_proj, drop["reference"], device))

    # reference image and motion frames: zero latents where dropped
    reference_latents = reference_latents.masked_fill(_rows(drop["reference"], reference_latents), 0.0)
    if motion_latents is None and batch.get("motion_frames") is not None and batch["motion_frames"].shape[1] > 0:
        if vae is None:
            raise ValueError("build_conditions needs a vae or motion_latents for the batch's motion_frames")
        motion_latents = encode_latents(vae, batch["motion_frames"])
    if motion_latents is not None:
        motion_latents = motion_latents.to(device, dtype)
        motion_latents = motion_latents.masked_fill(_rows(drop["reference"], motion_latents), 0.0)

    audio_tokens = _audio_tokens(batch, audio_proj, drop["audio"], device) if audio_proj is not None else None
    emotion_tokens = _emotion_tokens(batch, emotion_embed, drop["emotion"], device) if emotion_embed is not None else None
    return Conditions(text_states=text, reference_latents=reference_latents, motion_latents=motion_latents,
                      audio_tokens=audio_tokens, emotion_tokens=emotion_tokens, drop=drop)


def _needs(batch: dict[str, Any], names: tuple[str, ...], what: str) -> None:
    missing = [n for n in names if n not in batch]
    if missing:
        raise KeyError(f"{what} needs batch[{missing[0]!r}]: add its feature to data.stage2_features")


def _image_tokens(batch: dict[str, Any], image_proj: Any, dropped: torch.Tensor, device: Any) -> torch.Tensor:
    """ImageProjection of the reference image's CLIP embedding; exactly zero where the reference is dropped."""
    if "reference_image_embed" not in batch:
        raise KeyError("the reference image's CLIP path (model.image_proj) needs batch['reference_image_embed']: add "
                       "clip_image to data.stage1_features / data.stage2_features (data.reference_image_embed names the "
                       "entry), or set model.image_proj.enabled: false")
    embeds = batch["reference_image_embed"].to(device, next(image_proj.parameters()).dtype)
    tokens = image_proj(embeds)
    return tokens.masked_fill(_rows(dropped, tokens), 0.0)


def _audio_tokens(batch: dict[str, Any], audio_proj: Any, dropped: torch.Tensor, device: Any) -> torch.Tensor:
    """AudioProjection of the audio window (T + 2c frames) -> the tokens of the T frames; zero tokens where dropped."""
    _needs(batch, ("audio_embed",), "the audio condition")
    c = audio_proj.config.context_frames
    states = batch["audio_embed"].to(device, next(audio_proj.parameters()).dtype)
    frames = states.shape[1] - 2 * c
    target = batch["frames"].shape[1] if "frames" in batch else frames
    if frames != target or frames < 1:
        raise ValueError(f"audio_embed has {states.shape[1]} frames, the window {target} + 2 x audio context {c}: "
                         f"data.audio_context must equal model.audio_proj.context_frames")
    tokens = audio_proj(states)[:, c:c + frames]
    return tokens.masked_fill(_rows(dropped, tokens), 0.0)


def _emotion_tokens(batch: dict[str, Any], emotion_embed: Any, dropped: torch.Tensor, device: Any) -> torch.Tensor:
    """EmotionEmbedding of (E_t, E_ser, E_va resampled to K segments); its learned null where dropped."""
    from model.emotion_embed import fit_segments

    _needs(batch, ("text_emotion", "speech_emotion", "valence_arousal"), "the emotion condition")
    dtype = next(emotion_embed.parameters()).dtype
    va = fit_segments(batch["valence_arousal"].to(device, dtype), emotion_embed.config.va_segments)
    return emotion_embed(batch["text_emotion"].to(device, dtype), batch["speech_emotion"].to(device, dtype), va,
                         drop_mask=dropped)
