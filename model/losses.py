"""Training losses (paper section 3.7, and 3.5 for the A2M). Pure functions of tensors.

Every loss returns a scalar averaged over the batch (``reduction="mean"``) or a per-sample ``(B,)``
tensor (``reduction="none"``).

- ``diffusion_loss``: MSE to the epsilon or v target, optional min-SNR-gamma weighting
  (Hang et al. 2023); ``diffusion_target`` and ``snr`` are its parts.
- ``sync_loss``        eq. 2: ``(dt_p - dt_gt)^2 + (t_p - t_gt)^2`` from a sync model's estimates.
- ``emo_loss``         eq. 3: mean over K segments of ``(v_p - v_gt)^2 + (a_p - a_gt)^2``.
- ``au_loss``          eq. 4: mean over T frames and N action units of ``(AU_p - AU_gt)^2``.
- ``attr_action_loss`` eq. 5: ``1 - cos(e_p, e_gt)``.
- ``a2m_vae_loss``     3.5: reconstruction + KL of the posterior to the VP-flow prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _check_same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


# --------------------------------------------------------------------------------------- diffusion
def snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``abar_t / (1 - abar_t)`` at ``timesteps`` ``(B,)``."""
    abar = alphas_cumprod.to(timesteps.device)[timesteps].float()
    return abar / (1.0 - abar)


def _per_sample_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1))).to(like.dtype)


def diffusion_target(
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """The regression target: ``eps`` (epsilon) or ``v = sqrt(abar) eps - sqrt(1 - abar) x0``
    (v-prediction, Salimans & Ho 2022). ``latents`` are the clean ``x0``, ``(B, ...)``."""
    _check_same(latents, noise, "diffusion_target")
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        abar = alphas_cumprod.to(latents.device)[timesteps]
        sqrt_abar = _per_sample_view(abar.sqrt(), latents)
        sqrt_one_minus = _per_sample_view((1.0 - abar).sqrt(), latents)
        return sqrt_abar * noise - sqrt_one_minus * latents
    raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")


def diffusion_loss(
    model_output: torch.Tensor,
    target: torch.Tensor,
    timesteps: torch.Tensor | None = None,
    alphas_cumprod: torch.Tensor | None = None,
    prediction_type: str = "epsilon",
    snr_gamma: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Denoising loss: per-sample MSE ``mean((model_output - target)^2)`` over all non-batch dims,
    weighted by min-SNR-gamma when ``snr_gamma`` is set:
    ``min(SNR, gamma) / SNR`` (epsilon) or ``min(SNR, gamma) / (SNR + 1)`` (v-prediction).
    """
    _check_same(model_output, target, "diffusion_loss")
    per_sample = (model_output.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    if snr_gamma is not None:
        if timesteps is None or alphas_cumprod is None:
            raise ValueError("min-SNR weighting needs timesteps and alphas_cumprod")
        s = snr(alphas_cumprod, timesteps)
        clipped = torch.clamp(s, max=snr_gamma)
        if prediction_type == "epsilon":
            weight = clipped / s
        elif prediction_type == "v_prediction":
            weight = clipped / (s + 1.0)
        else:
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
        per_sample = per_sample * weight
    return _reduce(per_sample, reduction)


# --------------------------------------------------------------------------------------- sync (eq. 2)
@dataclass
class SyncEstimate:
    """What a sync model (e.g. Synchformer) estimates for one audio-video pair, per sample ``(B,)``:
    ``offset``: the temporal audio-video offset (seconds; its magnitude is used);
    ``timestamp``: where the misalignment occurs (seconds)."""

    offset: torch.Tensor
    timestamp: torch.Tensor


class SyncModel(Protocol):
    """The small interface the sync loss needs. ``video`` ``(B, 3, T, H, W)`` in [-1, 1],
    ``audio`` ``(B, S)`` 16 kHz. Must be differentiable in ``video`` for training."""

    def __call__(self, video: torch.Tensor, audio: torch.Tensor) -> SyncEstimate: ...


def sync_loss(predicted: SyncEstimate, reference: SyncEstimate, reduction: str = "mean") -> torch.Tensor:
    """Eq. 2: ``L_sync = (dt_p - dt_gt)^2 + (t_p - t_gt)^2``, with ``dt = |offset|`` of the generated
    (``predicted``) and ground-truth (``reference``) videos against the same audio."""
    _check_same(predicted.offset, reference.offset, "sync_loss offset")
    _check_same(predicted.timestamp, reference.timestamp, "sync_loss timestamp")
    per_sample = (predicted.offset.abs() - reference.offset.abs()).pow(2) + (
        predicted.timestamp - reference.timestamp
    ).pow(2)
    return _reduce(per_sample, reduction)


def sync_loss_from_model(
    model: SyncModel,
    generated_video: torch.Tensor,
    reference_video: torch.Tensor,
    audio: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """Eq. 2 with the estimates of ``model``; the ground-truth branch carries no gradient."""
    predicted = model(generated_video, audio)
    with torch.no_grad():
        reference = model(reference_video, audio)
    return sync_loss(predicted, reference, reduction)


# --------------------------------------------------------------------------------------- emo (eq. 3)
def overlapping_segments(audio: torch.Tensor, segment_samples: int, overlap: float = 0.5) -> torch.Tensor:
    """Split ``(B, S)`` audio into segments of ``segment_samples`` with the given overlap (50% in the
    paper): ``(B, K, segment_samples)``, K = ``1 + (S - segment) // hop``; a shorter clip is one
    zero-padded segment."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    hop = max(1, int(round(segment_samples * (1.0 - overlap))))
    if audio.shape[1] < segment_samples:
        audio = F.pad(audio, (0, segment_samples - audio.shape[1]))
    return audio.unfold(1, segment_samples, hop)


def emo_loss(
    va_predicted: torch.Tensor,
    va_reference: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Eq. 3: ``L_emo = 1/K sum_k [(v_p^k - v_gt^k)^2 + (a_p^k - a_gt^k)^2]``.

    ``va_*``: ``(B, K, 2)`` (valence, arousal) per 50%-overlapping segment of the generated and
    ground-truth videos' audio; ``mask`` ``(B, K)`` marks valid segments (K is then per sample).
    """
    _check_same(va_predicted, va_reference, "emo_loss")
    if va_predicted.ndim != 3 or va_predicted.shape[-1] != 2:
        raise ValueError(f"VA sequences must be (B, K, 2), got {tuple(va_predicted.shape)}")
    per_segment = (va_predicted - va_reference).pow(2).sum(dim=-1)
    if mask is None:
        per_sample = per_segment.mean(dim=1)
    else:
        mask = mask.to(per_segment.dtype)
        per_sample = (per_segment * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return _reduce(per_sample, reduction)


# --------------------------------------------------------------------------------------- AU (eq. 4)
def au_loss(au_predicted: torch.Tensor, au_reference: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. 4: ``L_AU = 1/(T N) sum_t sum_i (AU_p,i^t - AU_gt,i^t)^2``; inputs ``(B, T, N)``."""
    _check_same(au_predicted, au_reference, "au_loss")
    if au_predicted.ndim != 3:
        raise ValueError(f"AU sequences must be (B, T, N), got {tuple(au_predicted.shape)}")
    per_sample = (au_predicted - au_reference).pow(2).mean(dim=(1, 2))
    return _reduce(per_sample, reduction)


# --------------------------------------------------------------------------------------- attr-action (eq. 5)
def attr_action_loss(
    embedding_predicted: torch.Tensor, embedding_reference: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Eq. 5: ``L_attr-action = 1 - cos(e_p, e_gt)``; text embeddings ``(B, D)`` of the descriptions
    of the generated and ground-truth videos."""
    _check_same(embedding_predicted, embedding_reference, "attr_action_loss")
    per_sample = 1.0 - F.cosine_similarity(embedding_predicted, embedding_reference, dim=-1, eps=1e-8)
    return _reduce(per_sample, reduction)


# --------------------------------------------------------------------------------------- A2M (3.5)
def a2m_kl(mean: torch.Tensor, log_std: torch.Tensor, z_q: torch.Tensor, z_p: torch.Tensor) -> torch.Tensor:
    """Single-sample KL of the posterior ``q = N(mean, exp(log_std)^2)`` to the flow prior
    ``p(z_q) = N(f(z_q); 0, I)`` (log-det 0), per latent element, per sample ``(B,)``:

        log q(z_q) - log p(z_q) = mean over elements of [-log_std - eps^2 / 2 + z_p^2 / 2],
        eps = (z_q - mean) / exp(log_std)   (the log 2 pi terms cancel).
    """
    for name, t in (("log_std", log_std), ("z_q", z_q), ("z_p", z_p)):
        _check_same(mean, t, f"a2m_kl {name}")
    eps = (z_q - mean) * torch.exp(-log_std)
    elementwise = -log_std - 0.5 * eps.pow(2) + 0.5 * z_p.pow(2)
    return elementwise.flatten(1).mean(dim=1)


@dataclass
class A2MLoss:
    """``total = reconstruction + kl_weight * kl`` (scalars, or ``(B,)`` with ``reduction="none"``)."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def a2m_vae_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    z_q: torch.Tensor,
    z_p: torch.Tensor,
    kl_weight: float = 1.0,
    reduction: str = "mean",
) -> A2MLoss:
    """A2M VAE loss (3.5): MSE reconstruction of the motion latents ``(B, C, M, H, W)`` plus
    ``kl_weight`` x ``a2m_kl`` (KL with the VP-flow prior)."""
    _check_same(prediction, target, "a2m_vae_loss")
    reconstruction = (prediction - target).pow(2).flatten(1).mean(dim=1)
    kl = a2m_kl(mean, log_std, z_q, z_p)
    return A2MLoss(
        total=_reduce(reconstruction + kl_weight * kl, reduction),
        reconstruction=_reduce(reconstruction, reduction),
        kl=_reduce(kl, reduction),
    )


def gaussian_kl(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(N(mean, exp(log_std)^2) || N(0, 1))`` per element: the expectation of
    ``a2m_kl`` when the flow is the identity (used to check it)."""
    return -log_std + 0.5 * (torch.exp(2 * log_std) + mean.pow(2)) - 0.5

