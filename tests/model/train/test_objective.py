"""The objective: schedule from the SD folder, per-sample draws, CFG dropout rates, min-SNR, noise offset, x0."""

from __future__ import annotations

import pytest
import torch

from model.conditioning import ConditioningParams
from model.losses import diffusion_target, snr
from model.training import objective
from model.training.params import TrainParams


def test_the_schedule_is_sd15s_with_the_run_switches(project):
    sd = project / "weights" / "tiny" / "stable-diffusion-v1-5"
    s = objective.noise_scheduler(sd, TrainParams())
    assert s.config.beta_schedule == "scaled_linear" and s.config.prediction_type == "epsilon"
    z = objective.noise_scheduler(sd, TrainParams(prediction_type="v_prediction", zero_terminal_snr=True, timestep_spacing="trailing"))
    assert z.config.rescale_betas_zero_snr and z.config.timestep_spacing == "trailing"
    assert float(z.alphas_cumprod[-1]) < 1e-6 < float(s.alphas_cumprod[-1])
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(z.config)  # the sampler of inference takes the same switch
    assert ddim.config.prediction_type == "v_prediction" and ddim.config.rescale_betas_zero_snr


def test_draws_do_not_depend_on_how_a_batch_is_split():
    cond = ConditioningParams()
    whole = objective.Draws(objective.sample_generators(7, 3, 0, 0, 4), (4, 2, 8, 8), 1000, cond)
    halves = [objective.Draws(objective.sample_generators(7, 3, 0, i, 2), (4, 2, 8, 8), 1000, cond) for i in (0, 2)]
    assert torch.equal(whole.noise, torch.cat([h.noise for h in halves]))
    assert torch.equal(whole.timesteps, torch.cat([h.timesteps for h in halves]))
    assert all(torch.equal(whole.drop[k], torch.cat([h.drop[k] for h in halves])) for k in whole.drop)
    other = objective.Draws(objective.sample_generators(7, 4, 0, 0, 4), (4, 2, 8, 8), 1000, cond)
    assert not torch.equal(whole.noise, other.noise)


def test_cfg_dropout_and_case_rates_are_honoured_over_many_draws():
    cond = ConditioningParams(drop_reference=0.1, drop_caption=0.2, drop_audio=0.3, drop_emotion=0.5)
    n = 4000
    draws = objective.Draws(objective.sample_generators(0, 1, 0, 0, n), (1,), 1000, cond)
    for kind, p in (("reference", 0.1), ("caption", 0.2), ("audio", 0.3), ("emotion", 0.5)):
        rate = draws.drop[kind].float().mean().item()
        assert abs(rate - p) < 4 * (p * (1 - p) / n) ** 0.5, (kind, rate)
    assert abs(draws.first_clip(0.05).float().mean().item() - 0.05) < 4 * (0.05 * 0.95 / n) ** 0.5
    assert abs(draws.use_a2m("mix", 0.3).float().mean().item() - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5
    assert draws.use_a2m("a2m", 0.3).all() and not draws.use_a2m("gt", 0.3).any()
    # the drops of different conditions are independent
    both = (draws.drop["audio"] & draws.drop["emotion"]).float().mean().item()
    assert abs(both - 0.15) < 4 * (0.15 * 0.85 / n) ** 0.5
    t = draws.timesteps.float()
    assert t.min() >= 0 and t.max() <= 999 and abs(t.mean().item() - 499.5) < 20


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_each_sample_before_the_mean(project, prediction_type):
    sd = project / "weights" / "tiny" / "stable-diffusion-v1-5"
    t = TrainParams(prediction_type=prediction_type, min_snr_gamma=5.0)
    s = objective.noise_scheduler(sd, t)
    g = torch.Generator().manual_seed(0)
    x0, noise, pred = (torch.randn(3, 4, 2, 8, 8, generator=g) for _ in range(3))
    steps = torch.tensor([5, 300, 900])
    per = objective.loss(s, pred, x0, noise, steps, t)
    target = diffusion_target(x0, noise, steps, s.alphas_cumprod, prediction_type)
    mse = (pred - target).pow(2).flatten(1).mean(1)
    r = snr(s.alphas_cumprod, steps)
    weight = r.clamp(max=5.0) / (r if prediction_type == "epsilon" else r + 1)
    torch.testing.assert_close(per, mse * weight)
    assert per.shape == (3,)


def test_noise_offset_is_constant_over_frames_and_pixels_per_channel():
    draws = objective.Draws(objective.sample_generators(0, 1, 0, 0, 2), (4, 3, 8, 8), 1000, ConditioningParams())

    class Plain:
        def add_noise(self, x, noise, t):
            return noise

    latents = torch.zeros(2, 4, 3, 8, 8)
    with_offset = objective.noised(Plain(), latents, draws, 0.1)[1]
    shift = with_offset - draws.noise
    assert torch.allclose(shift, 0.1 * draws.offset[:, :, None, None, None].expand_as(shift))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_predicted_x0_inverts_the_noising(project, prediction_type):
    sd = project / "weights" / "tiny" / "stable-diffusion-v1-5"
    s = objective.noise_scheduler(sd, TrainParams(prediction_type=prediction_type))
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 4, 2, 8, 8, generator=g), torch.randn(3, 4, 2, 8, 8, generator=g)
    steps = torch.tensor([1, 400, 950])
    noisy = s.add_noise(x0, noise, steps)
    exact = diffusion_target(x0, noise, steps, s.alphas_cumprod, prediction_type)
    torch.testing.assert_close(objective.predicted_x0(s, exact, noisy, steps, prediction_type), x0, atol=2e-3, rtol=1e-3)
