"""Losses on hand-computed examples (paper eqs. 2-5, diffusion, A2M)."""

from __future__ import annotations

import math

import pytest
import torch

from model.losses import (
    SyncEstimate,
    a2m_kl,
    a2m_vae_loss,
    attr_action_loss,
    au_loss,
    diffusion_loss,
    diffusion_target,
    emo_loss,
    gaussian_kl,
    overlapping_segments,
    snr,
    sync_loss,
    sync_loss_from_model,
)

T = torch.tensor


def test_diffusion_epsilon_and_v_targets():
    alphas_cumprod = T([0.64, 0.36])  # sqrt: 0.8/0.6 at t=0, 0.6/0.8 at t=1
    x0 = T([[1.0, 2.0], [3.0, 4.0]])
    eps = T([[0.5, -0.5], [1.0, 0.0]])
    t = T([0, 1])
    assert torch.equal(diffusion_target(x0, eps, t, alphas_cumprod, "epsilon"), eps)
    v = diffusion_target(x0, eps, t, alphas_cumprod, "v_prediction")
    # v = sqrt(abar) eps - sqrt(1 - abar) x0
    expected = T([[0.8 * 0.5 - 0.6 * 1, 0.8 * -0.5 - 0.6 * 2], [0.6 * 1.0 - 0.8 * 3, 0.6 * 0.0 - 0.8 * 4]])
    torch.testing.assert_close(v, expected)
    with pytest.raises(ValueError):
        diffusion_target(x0, eps, t, alphas_cumprod, "sample")


def test_diffusion_loss_and_min_snr_weights():
    pred = T([[1.0, 1.0], [0.0, 2.0]])
    target = T([[0.0, 0.0], [0.0, 0.0]])
    # per-sample MSE: 1.0 and 2.0
    torch.testing.assert_close(diffusion_loss(pred, target), T(1.5))
    torch.testing.assert_close(diffusion_loss(pred, target, reduction="none"), T([1.0, 2.0]))
    alphas_cumprod = T([0.8, 0.2])  # SNR 4 and 0.25
    t = T([0, 1])
    torch.testing.assert_close(snr(alphas_cumprod, t), T([4.0, 0.25]))
    # epsilon: min(SNR, 1) / SNR = 0.25, 1
    eps = diffusion_loss(pred, target, t, alphas_cumprod, "epsilon", snr_gamma=1.0, reduction="none")
    torch.testing.assert_close(eps, T([1.0 * 0.25, 2.0 * 1.0]))
    # v-prediction: min(SNR, 1) / (SNR + 1) = 0.2, 0.2
    v = diffusion_loss(pred, target, t, alphas_cumprod, "v_prediction", snr_gamma=1.0, reduction="none")
    torch.testing.assert_close(v, T([0.2, 0.4]))
    with pytest.raises(ValueError, match="timesteps"):
        diffusion_loss(pred, target, snr_gamma=5.0)


def test_sync_loss_eq2():
    pred = SyncEstimate(offset=T([-0.2, 0.4]), timestamp=T([1.0, 2.0]))
    gt = SyncEstimate(offset=T([0.0, 0.1]), timestamp=T([1.5, 2.0]))
    # (|dt_p| - |dt_gt|)^2 + (t_p - t_gt)^2 : 0.04 + 0.25 = 0.29 ; 0.09 + 0 = 0.09
    torch.testing.assert_close(sync_loss(pred, gt, reduction="none"), T([0.29, 0.09]))
    torch.testing.assert_close(sync_loss(pred, gt), T(0.19))


def test_sync_loss_through_a_model_interface():
    class MeanBrightnessSync:
        """A stand-in sync model: offset = mean of the video, timestamp = mean of the audio."""

        def __call__(self, video, audio):
            return SyncEstimate(offset=video.mean(dim=(1, 2, 3, 4)), timestamp=audio.mean(dim=1))

    generated = torch.full((1, 3, 2, 4, 4), 0.5, requires_grad=True)
    reference = torch.full((1, 3, 2, 4, 4), 0.2, requires_grad=True)
    audio = torch.ones(1, 16)
    loss = sync_loss_from_model(MeanBrightnessSync(), generated, reference, audio)
    torch.testing.assert_close(loss, T(0.09))
    loss.backward()
    assert generated.grad is not None and reference.grad is None


def test_emo_loss_eq3():
    va_p = T([[[0.1, 0.2], [0.3, 0.4], [0.5, 0.5]]])
    va_gt = T([[[0.0, 0.0], [0.3, 0.2], [0.0, 0.0]]])
    # segments: 0.01+0.04=0.05, 0+0.04=0.04, 0.25+0.25=0.5 -> mean over K=3
    torch.testing.assert_close(emo_loss(va_p, va_gt), T(0.59 / 3))
    mask = T([[1.0, 1.0, 0.0]])
    torch.testing.assert_close(emo_loss(va_p, va_gt, mask=mask), T(0.045))
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        emo_loss(va_p[..., :1], va_gt[..., :1])


def test_overlapping_segments_half_overlap():
    audio = torch.arange(10.0)[None]
    seg = overlapping_segments(audio, 4)  # hop 2 -> starts 0, 2, 4, 6
    assert seg.shape == (1, 4, 4)
    assert seg[0, 1].tolist() == [2, 3, 4, 5]
    short = overlapping_segments(torch.ones(1, 3), 4)
    assert short.tolist() == [[[1, 1, 1, 0]]]


def test_au_loss_eq4():
    au_p = T([[[1.0, 0.0], [0.5, 0.5]]])  # T=2 frames, N=2 AUs
    au_gt = T([[[0.0, 0.0], [0.5, 1.5]]])
    torch.testing.assert_close(au_loss(au_p, au_gt), T((1.0 + 0 + 0 + 1.0) / 4))


def test_attr_action_loss_eq5():
    e_p = T([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    e_gt = T([[0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])
    # cos: 0, 1, -1 -> 1 - cos: 1, 0, 2
    torch.testing.assert_close(attr_action_loss(e_p, e_gt, reduction="none"), T([1.0, 0.0, 2.0]))
    torch.testing.assert_close(attr_action_loss(e_p, e_gt), T(1.0))


def test_a2m_kl_hand_values():
    # mean 1, sigma 2, z_q 3 -> eps 1; z_p 3: -log 2 - 1/2 + 9/2
    mean, log_std = T([[1.0]]), T([[math.log(2.0)]])
    kl = a2m_kl(mean, log_std, T([[3.0]]), T([[3.0]]))
    torch.testing.assert_close(kl, T([4.0 - math.log(2.0)]))
    # standard posterior, identity flow: log q = log p exactly
    z = torch.randn(2, 5)
    assert torch.allclose(a2m_kl(torch.zeros(2, 5), torch.zeros(2, 5), z, z), torch.zeros(2), atol=1e-7)


def test_a2m_kl_is_an_unbiased_estimate_with_identity_flow():
    g = torch.Generator().manual_seed(0)
    mean = T([[0.5, -1.0]]).expand(20000, 2)
    log_std = T([[math.log(0.5), 0.2]]).expand(20000, 2)
    z_q = mean + log_std.exp() * torch.randn(mean.shape, generator=g)
    estimate = a2m_kl(mean, log_std, z_q, z_q).mean()
    exact = gaussian_kl(mean[:1], log_std[:1]).mean()
    assert abs(estimate.item() - exact.item()) < 0.02


def test_a2m_vae_loss_total():
    pred = torch.ones(1, 2, 1, 1, 1)
    target = torch.zeros(1, 2, 1, 1, 1)
    mean, log_std = T([[1.0]]), T([[math.log(2.0)]])
    out = a2m_vae_loss(pred, target, mean, log_std, T([[3.0]]), T([[3.0]]), kl_weight=0.5)
    torch.testing.assert_close(out.reconstruction, T(1.0))
    torch.testing.assert_close(out.kl, T(4.0 - math.log(2.0)))
    torch.testing.assert_close(out.total, T(1.0 + 0.5 * (4.0 - math.log(2.0))))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        au_loss(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3))
