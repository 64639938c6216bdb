"""Volume-preserving normalising flow (paper section 3.5, figure 2c).

``z_p = f(z_q)`` with f a stack of N (residual additive coupling layer, channel flip) pairs:

    coupling:  z = [z_a, z_b] (channel halves),  z_b <- z_b + m(z_a, c)      (inverse: z_b - m(z_a, c))
    flip:      reverse the channel order                                      (its own inverse)

Each coupling is triangular with a unit diagonal and each flip a permutation, so
``log |det df/dz| = 0`` exactly: the flow preserves volume and the density of the prior maps
without a Jacobian term (``log p(z_q) = log N(f(z_q); 0, I)``). The shift network m is a residual
stack of convolutions (optionally conditioned on a vector c, e.g. audio) whose output projection
starts at zero, so the flow starts as the identity up to the channel flips.

Shapes: ``z`` ``(B, C, H, W)``, ``c`` ``(B, cond_dim)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ResidualCouplingLayer(nn.Module):
    """Additive (mean-only) coupling: ``z_b <- z_b + m(z_a, c)``; log-det 0."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, num_layers: int, cond_dim: int):
        super().__init__()
        if channels < 2:
            raise ValueError("a coupling layer needs at least 2 channels")
        if kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        self.split = channels // 2
        self.pre = nn.Conv2d(self.split, hidden_channels, 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(hidden_channels, hidden_channels, kernel_size, padding=kernel_size // 2) for _ in range(num_layers)
        )
        self.cond = nn.Linear(cond_dim, hidden_channels * num_layers) if cond_dim > 0 else None
        self.post = nn.Conv2d(hidden_channels, channels - self.split, 1)
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def shift(self, z_a: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.pre(z_a)
        cond_terms = None
        if self.cond is not None:
            if cond is None:
                raise ValueError("this flow is conditioned: pass cond (B, cond_dim)")
            cond_terms = self.cond(cond).chunk(len(self.convs), dim=1)
        for i, conv in enumerate(self.convs):
            y = conv(h)
            if cond_terms is not None:
                y = y + cond_terms[i][:, :, None, None]
            h = h + F.silu(y)
        return self.post(h)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None, reverse: bool = False) -> torch.Tensor:
        z_a, z_b = z[:, : self.split], z[:, self.split :]
        m = self.shift(z_a, cond)
        z_b = z_b - m if reverse else z_b + m
        return torch.cat([z_a, z_b], dim=1)


class VPFlow(ModelMixin, ConfigMixin):
    """``z_p = f(z_q)``: ``num_flows`` x (ResidualCouplingLayer, channel flip); exactly invertible,
    log-det 0.

    Args:
        channels: latent channels C.
        hidden_channels: width of each coupling's shift network.
        kernel_size: convolution size in the shift networks.
        num_flows: N, coupling + flip pairs.
        layers_per_coupling: residual convolutions per shift network.
        cond_dim: size of the conditioning vector (0: unconditioned).
    """

    @register_to_config
    def __init__(
        self,
        channels: int = 8,
        hidden_channels: int = 64,
        kernel_size: int = 3,
        num_flows: int = 4,
        layers_per_coupling: int = 2,
        cond_dim: int = 0,
    ):
        super().__init__()
        self.couplings = nn.ModuleList(
            ResidualCouplingLayer(channels, hidden_channels, kernel_size, layers_per_coupling, cond_dim)
            for _ in range(num_flows)
        )

    @staticmethod
    def log_det(z: torch.Tensor) -> torch.Tensor:
        """``log |det df/dz|`` per sample: identically 0 (``(B,)`` zeros)."""
        return z.new_zeros(z.shape[0])

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None, reverse: bool = False) -> torch.Tensor:
        """``z_q -> z_p`` (``reverse=False``) or ``z_p -> z_q`` (``reverse=True``), same shape."""
        if z.ndim != 4 or z.shape[1] != self.config.channels:
            raise ValueError(f"z must be (B, {self.config.channels}, H, W), got {tuple(z.shape)}")
        if not reverse:
            for coupling in self.couplings:
                z = coupling(z, cond)
                z = torch.flip(z, dims=[1])
        else:
            for coupling in reversed(self.couplings):
                z = torch.flip(z, dims=[1])
                z = coupling(z, cond, reverse=True)
        return z

    def inverse(self, z_p: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``f^{-1}(z_p)``."""
        return self.forward(z_p, cond, reverse=True)
