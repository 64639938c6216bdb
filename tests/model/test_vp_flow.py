"""VP-flow: exact invertibility, zero log-determinant, identity start, round trip."""

from __future__ import annotations

import pytest
import torch

from model.vp_flow import VPFlow

from .tiny import assert_same_state, public_config, randn, seeded


def _trained_flow(cond_dim=0, seed=0):
    """A flow whose shift networks are not zero any more (as after training)."""
    flow = seeded(lambda: VPFlow(channels=4, hidden_channels=8, num_flows=3, layers_per_coupling=2, cond_dim=cond_dim), seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for coupling in flow.couplings:
            coupling.post.weight.copy_(torch.randn(coupling.post.weight.shape, generator=g) * 0.5)
            coupling.post.bias.copy_(torch.randn(coupling.post.bias.shape, generator=g) * 0.5)
    return flow


@pytest.mark.parametrize("cond_dim", [0, 6])
def test_exactly_invertible(cond_dim):
    flow = _trained_flow(cond_dim)
    z = randn(3, 4, 5, 5, seed=1)
    cond = randn(3, cond_dim, seed=2) if cond_dim else None
    with torch.no_grad():
        z_p = flow(z, cond)
        assert (z_p - z).abs().max() > 0.1  # a real transformation
        back = flow.inverse(z_p, cond)
        assert (back - z).abs().max() < 1e-5
        assert (flow(flow.inverse(z, cond), cond) - z).abs().max() < 1e-5


def test_log_det_is_zero():
    flow = _trained_flow(cond_dim=3, seed=2)
    z = randn(1, 4, 3, 3, seed=3)
    cond = randn(1, 3, seed=4)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v.reshape(1, 4, 3, 3), cond).reshape(-1), z.reshape(-1))
    assert jac.shape == (36, 36)
    sign, logabsdet = torch.linalg.slogdet(jac.double())
    assert abs(logabsdet.item()) < 1e-5 and abs(abs(sign.item()) - 1) < 1e-9
    assert torch.equal(VPFlow.log_det(z), torch.zeros(1))


def test_starts_as_channel_flips():
    flow = VPFlow(channels=4, hidden_channels=8, num_flows=3)
    z = randn(2, 4, 3, 3)
    with torch.no_grad():
        assert torch.equal(flow(z), torch.flip(z, dims=[1]))  # odd number of flips
    flow2 = VPFlow(channels=4, hidden_channels=8, num_flows=2)
    with torch.no_grad():
        assert torch.equal(flow2(z), z)


def test_backward_and_round_trip(tmp_path):
    flow = _trained_flow(cond_dim=2)
    z = randn(2, 4, 4, 4).requires_grad_(True)
    cond = randn(2, 2, seed=9)
    flow(z, cond).square().sum().backward()
    assert z.grad is not None and all(p.grad is not None for p in flow.parameters())
    flow.save_pretrained(tmp_path / "flow")
    loaded = VPFlow.from_pretrained(tmp_path / "flow")
    assert public_config(loaded)["cond_dim"] == 2
    assert_same_state(flow, loaded)
    with torch.no_grad():
        assert torch.equal(flow(z, cond), loaded(z, cond))


def test_errors():
    with pytest.raises(ValueError, match="cond"):
        _trained_flow(cond_dim=2)(randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        VPFlow(channels=4)(randn(1, 3, 2, 2))
