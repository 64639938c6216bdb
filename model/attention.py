"""Attention processors and added attention modules of the 4-attention transformer block.

Paper section 3.2 (figure 2a): every transformer block of the denoising UNet carries four
attentions. diffusers' ``BasicTransformerBlock`` computes

    x = x + attn1(norm1(x))                       # self-attention
    x = x + attn2(norm2(x), context)              # cross-attention
    x = x + ff(norm3(x))

and lets each ``Attention`` delegate to an *attention processor*. We extend it only there (the
diffusers files are used as they are): two processors, installed with ``Attention.set_processor``,
hold the added modules as submodules, so they are saved, loaded and optimised with the UNet.

- ``SpatialTemporalAttnProcessor`` (attn1):
    spatial attention  (3.2, 3.3): self-attention whose keys/values are the frame's own tokens
                       followed by the ReferenceNet tokens of the reference image and of the motion
                       frames at the same block (base SD weights, so with no reference it *is* the
                       SD self-attention);
    temporal attention (3.2): ``TemporalAttention`` across frames at each spatial position, with
                       the motion-frame tokens prepended on the frame axis; zero-initialised output.
- ``CrossAudioEmotionAttnProcessor`` (attn2):
    cross-attention    (3.4, 3.6): the SD cross-attention to the CLIP text context, plus
                       ``EmotionAttention`` to the emotion tokens (eq. 1), decoupled keys/values;
    audio attention    (3.2): ``AudioAttention`` to the per-frame audio tokens.
    Both added attentions have zero-initialised output projections.

The added attentions run in parallel on the normalised input of their host attention and are added
to its output. With every added output projection at zero and no reference tokens, the block
computes exactly the SD 1.5 block: this is how the DenoisingUNet starts from SD 1.5 (DESIGN
section 6). Reference tokens act from the start, through SD's own spatial keys/values.

Per-call inputs travel explicitly in ``cross_attention_kwargs={"frame_conditions": FrameConditions}``
(diffusers forwards ``cross_attention_kwargs`` to every processor); no module keeps state between
calls. The ReferenceNet's processor ``ReferenceFeatureAttnProcessor`` writes its attn1 inputs into a
dict that the ReferenceNet creates for that call and returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

FRAME_CONDITIONS_KWARG = "frame_conditions"
FEATURE_SINK_KWARG = "feature_sink"


@dataclass
class FrameConditions:
    """The per-call conditioning of the 4-attention blocks.

    Shapes use B = videos, F = generated frames, R = 1 + M reference images (the reference image then
    M motion frames), L_i/C_i = tokens/channels at block i.

    Attributes:
        num_frames: F. The UNet batch is B * F images, frame-major inside each video (index b * F + f).
        reference: block name -> ReferenceNet tokens ``(B, R, L_i, C_i)``; None for no reference.
        audio_tokens: ``(B * F, T_a, D_audio)`` per-frame audio tokens; None for none.
        emotion_tokens: ``(B * F, N, D_emotion)`` emotion tokens; None for none.
    """

    num_frames: int
    reference: dict[str, torch.Tensor] | None = None
    audio_tokens: torch.Tensor | None = None
    emotion_tokens: torch.Tensor | None = None


def sinusoidal_positions(length: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal position embedding ``(length, dim)`` (Vaswani et al.), computed on the fly."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros(length, 1, device=device)], dim=-1)
    return emb.to(dtype=dtype) if dtype is not None else emb


def _zero_output(attn: Attention) -> Attention:
    nn.init.zeros_(attn.to_out[0].weight)
    if attn.to_out[0].bias is not None:
        nn.init.zeros_(attn.to_out[0].bias)
    return attn


class ZeroOutCrossAttention(nn.Module):
    """A diffusers ``Attention`` from ``(N, L, dim)`` queries to ``(N, T, context_dim)`` tokens whose
    output projection starts at zero, so the module first contributes nothing."""

    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        self.attn = _zero_output(Attention(query_dim=dim, cross_attention_dim=context_dim, heads=heads, dim_head=dim_head))

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``(N, L, dim), (N, T, context_dim) -> (N, L, dim)``."""
        if context.shape[0] != hidden_states.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: context batch {context.shape[0]} != hidden batch {hidden_states.shape[0]}"
            )
        return self.attn(hidden_states, encoder_hidden_states=context)


class AudioAttention(ZeroOutCrossAttention):
    """Audio attention (3.2): each frame's tokens attend to that frame's audio tokens
    ``(B * F, T_a, D_audio)`` from the AudioProjection."""


class EmotionAttention(ZeroOutCrossAttention):
    """Emotion part of the cross-attention (3.6, eq. 1): tokens attend to the emotion tokens
    ``(B * F, N, D_emotion)`` with their own keys/values (decoupled cross-attention)."""


class TemporalAttention(nn.Module):
    """Temporal attention (3.2) across frames at each spatial position.

    Input ``(B * F, L, C)`` frame tokens and optional motion-frame tokens ``(B, M, L, C)``; at each of
    the L positions, the F frame tokens (queries) attend to the M + F tokens of the motion frames
    followed by the frames (keys/values), with a sinusoidal position embedding over those M + F
    positions. Output ``(B * F, L, C)``; zero-initialised output projection.
    """

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.attn = _zero_output(Attention(query_dim=dim, heads=heads, dim_head=dim_head))

    def forward(self, hidden_states: torch.Tensor, num_frames: int, motion: torch.Tensor | None = None) -> torch.Tensor:
        bf, length, channels = hidden_states.shape
        if bf % num_frames:
            raise ValueError(f"TemporalAttention: batch {bf} is not a multiple of num_frames={num_frames}")
        batch = bf // num_frames
        # (B*F, L, C) -> (B*L, F, C)
        frames = hidden_states.reshape(batch, num_frames, length, channels).permute(0, 2, 1, 3)
        frames = frames.reshape(batch * length, num_frames, channels)
        num_motion = 0
        if motion is not None and motion.shape[1] > 0:
            if motion.shape[0] != batch or motion.shape[2:] != (length, channels):
                raise ValueError(
                    f"TemporalAttention: motion tokens {tuple(motion.shape)} do not fit frames "
                    f"(B={batch}, L={length}, C={channels})"
                )
            num_motion = motion.shape[1]
            motion = motion.permute(0, 2, 1, 3).reshape(batch * length, num_motion, channels)
            sequence = torch.cat([motion, frames], dim=1)
        else:
            sequence = frames
        sequence = sequence + sinusoidal_positions(sequence.shape[1], channels, sequence.device, sequence.dtype)
        out = self.attn(sequence[:, num_motion:], encoder_hidden_states=sequence)
        return out.reshape(batch, length, num_frames, channels).permute(0, 2, 1, 3).reshape(bf, length, channels)


def _check_plain(attn: Attention, encoder_hidden_states: torch.Tensor | None, where: str) -> None:
    if encoder_hidden_states is not None:
        raise ValueError(f"{where}: self-attention got encoder_hidden_states (only_cross_attention is not supported)")
    if attn.group_norm is not None or attn.spatial_norm is not None or attn.residual_connection:
        raise ValueError(f"{where}: only SD-style attention (no group/spatial norm, no residual) is supported")


class SpatialTemporalAttnProcessor(nn.Module):
    """Processor for attn1 of a denoising-UNet transformer block: spatial + temporal attention.

    Args:
        name: the transformer block's module name inside the UNet; it selects this block's
            ReferenceNet tokens in ``FrameConditions.reference``.
        dim, heads, dim_head: the host attention's sizes.

    Call: ``hidden_states`` ``(B * F, L, C)`` (``norm1`` output) -> ``(B * F, L, C)``. Without
    ``frame_conditions`` it is SD's self-attention (plain image use). With them:
    ``SDPA(q=x, kv=[x, ref_0, ..., ref_M]) + TemporalAttention(x, motion=[ref_1..ref_M])``.
    """

    def __init__(self, name: str, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.name = name
        self.temporal = TemporalAttention(dim, heads, dim_head)
        self._sdpa = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        frame_conditions: FrameConditions | None = None,
    ) -> torch.Tensor:
        _check_plain(attn, encoder_hidden_states, self.name)
        if frame_conditions is None:
            return self._sdpa(attn, hidden_states, attention_mask=attention_mask, temb=temb)
        num_frames = frame_conditions.num_frames
        reference = None if frame_conditions.reference is None else frame_conditions.reference.get(self.name)
        if frame_conditions.reference is not None and reference is None:
            raise KeyError(f"reference features have no entry for block {self.name!r}")
        key_value = None
        motion = None
        if reference is not None:
            bf, length, channels = hidden_states.shape
            batch, num_ref = reference.shape[:2]
            if batch * num_frames != bf or reference.shape[2:] != (length, channels):
                raise ValueError(
                    f"{self.name}: reference tokens {tuple(reference.shape)} do not fit hidden states "
                    f"{tuple(hidden_states.shape)} with num_frames={num_frames}"
                )
            if attention_mask is not None:
                raise ValueError(f"{self.name}: attention masks are not supported with reference tokens")
            ref_tokens = reference.reshape(batch, 1, num_ref * length, channels).expand(batch, num_frames, -1, -1)
            key_value = torch.cat([hidden_states, ref_tokens.reshape(bf, num_ref * length, channels)], dim=1)
            motion = reference[:, 1:]
        spatial = self._sdpa(attn, hidden_states, encoder_hidden_states=key_value, attention_mask=attention_mask, temb=temb)
        return spatial + self.temporal(hidden_states, num_frames, motion)


class CrossAudioEmotionAttnProcessor(nn.Module):
    """Processor for attn2 of a denoising-UNet transformer block: cross-attention to the text context
    and to the emotion tokens, plus audio attention.

    Call: ``hidden_states`` ``(B * F, L, C)`` (``norm2`` output), ``encoder_hidden_states``
    ``(B * F, L_text, D_text)`` -> ``(B * F, L, C)``:
    ``SD cross-attn(x, text) + EmotionAttention(x, emotion) + AudioAttention(x, audio)``; the added
    terms are skipped when their tokens are None.
    """

    def __init__(self, name: str, dim: int, heads: int, dim_head: int, audio_dim: int, emotion_dim: int):
        super().__init__()
        self.name = name
        self.emotion = EmotionAttention(dim, emotion_dim, heads, dim_head)
        self.audio = AudioAttention(dim, audio_dim, heads, dim_head)
        self._sdpa = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        frame_conditions: FrameConditions | None = None,
    ) -> torch.Tensor:
        out = self._sdpa(attn, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, temb=temb)
        if frame_conditions is not None:
            if frame_conditions.emotion_tokens is not None:
                out = out + self.emotion(hidden_states, frame_conditions.emotion_tokens)
            if frame_conditions.audio_tokens is not None:
                out = out + self.audio(hidden_states, frame_conditions.audio_tokens)
        return out


class ReferenceFeatureAttnProcessor:
    """Processor for the ReferenceNet's attentions (3.3): SD attention that, for attn1 (``name`` set),
    also records its input ``(B * R, L, C)`` in the per-call ``feature_sink`` dict under ``name``.

    It holds no parameters and no state; the sink is created and returned by ``ReferenceNet.forward``.
    A recomputation under gradient checkpointing does not overwrite an entry already recorded.
    """

    def __init__(self, name: str | None):
        self.name = name
        self._sdpa = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        feature_sink: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if feature_sink is not None and self.name is not None:
            feature_sink.setdefault(self.name, hidden_states)
        return self._sdpa(attn, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, temb=temb)


def transformer_blocks(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``BasicTransformerBlock``s of a UNet with their module names, in registration order."""
    from diffusers.models.attention import BasicTransformerBlock

    return [(name, m) for name, m in unet.named_modules() if isinstance(m, BasicTransformerBlock)]


def attention_sizes(attn: Attention) -> tuple[int, int, int]:
    """``(dim, heads, dim_head)`` of a diffusers ``Attention``."""
    return attn.query_dim, attn.heads, attn.inner_dim // attn.heads
