"""Audio-to-Motion module (paper section 3.5, figure 2b): a VP-flow VAE that produces motion frames.

Inputs are VAE latents (scaled by the SD VAE's ``scaling_factor``): the reference image
``(B, C, H, W)`` and, for training, the M target motion frames ``(B, C, M, H, W)``; and the wav2vec 2.0
features of those M frames ``(B, M, num_layers, feature_dim)``.

- audio encoder: softmax-weighted sum of the wav2vec2 layers per frame, per-frame MLP, then the M
  frames flattened into one conditioning vector ``c`` ``(B, cond_dim)``;
- VAE encoder q(z_q | motion, reference, audio): diffusers ``ResnetBlock2D``s (c as their embedding
  input) and stride-2 convolutions down to ``(B, z_channels, H / 2^d, W / 2^d)`` -> ``(mu, log sigma)``;
  ``z_q = mu + sigma * eps``;
- VP-flow: ``z_p = f(z_q; c)`` (``model.vp_flow``; log-det 0);
- VAE decoder p(motion | z_p, reference, audio): convolutions up to ``(B, C * M, H, W)`` added to the
  reference latent repeated M times (the decoder predicts the motion relative to the reference).

Training minimises reconstruction + KL with the flow prior (``model.losses.a2m_vae_loss``): the prior
of z_q is ``N(f(z_q); 0, I)`` (no Jacobian term, the flow preserves volume), so the decoder's input z_p
is standard normal under the prior and ``generate`` samples ``z_p ~ N(0, T^2 I)`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from diffusers.utils import BaseOutput
from torch import nn

from .vp_flow import VPFlow


@dataclass
class A2MOutput(BaseOutput):
    """``sample`` ``(B, C, M, H, W)`` reconstructed motion latents; ``mean``, ``log_std``, ``z_q``,
    ``z_p`` ``(B, z_channels, h, w)`` (posterior parameters, posterior sample and its flow image)."""

    sample: torch.Tensor
    mean: torch.Tensor
    log_std: torch.Tensor
    z_q: torch.Tensor
    z_p: torch.Tensor


class A2M(ModelMixin, ConfigMixin):
    """VP-flow VAE from (reference latent, audio) to M motion-frame latents (3.5).

    Args:
        latent_channels: C of the SD VAE latents.
        motion_frames: M, motion frames produced.
        audio_layers, audio_dim: wav2vec2 hidden states per frame and their channels.
        cond_dim: size of the audio conditioning vector c.
        hidden_channels: width of the encoder/decoder convolutions.
        num_downsamples: d; the latent grid is ``(H / 2^d, W / 2^d)``.
        z_channels: channels of z.
        norm_num_groups: GroupNorm groups in the resnet blocks.
        flow_hidden_channels, flow_num_flows, flow_layers_per_coupling, flow_kernel_size: the VPFlow.
    """

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        motion_frames: int = 2,
        audio_layers: int = 13,
        audio_dim: int = 768,
        cond_dim: int = 256,
        hidden_channels: int = 128,
        num_downsamples: int = 2,
        z_channels: int = 8,
        norm_num_groups: int = 32,
        flow_hidden_channels: int = 64,
        flow_num_flows: int = 4,
        flow_layers_per_coupling: int = 2,
        flow_kernel_size: int = 3,
    ):
        super().__init__()
        c, m, h, g = latent_channels, motion_frames, hidden_channels, norm_num_groups

        def resnet(channels_in: int, channels_out: int) -> ResnetBlock2D:
            return ResnetBlock2D(in_channels=channels_in, out_channels=channels_out, temb_channels=cond_dim, groups=g)

        # audio -> c
        self.layer_weights = nn.Parameter(torch.zeros(audio_layers))
        self.audio_frame = nn.Sequential(nn.Linear(audio_dim, cond_dim), nn.SiLU())
        self.audio_cond = nn.Sequential(nn.Linear(m * cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

        # encoder q(z | motion, reference, audio)
        self.enc_in = nn.Conv2d(c * (m + 1), h, 3, padding=1)
        self.enc_blocks = nn.ModuleList(resnet(h, h) for _ in range(num_downsamples))
        self.enc_down = nn.ModuleList(nn.Conv2d(h, h, 3, stride=2, padding=1) for _ in range(num_downsamples))
        self.enc_mid = resnet(h, h)
        self.enc_out = nn.Sequential(nn.GroupNorm(g, h), nn.SiLU(), nn.Conv2d(h, 2 * z_channels, 1))

        self.flow = VPFlow(
            channels=z_channels,
            hidden_channels=flow_hidden_channels,
            kernel_size=flow_kernel_size,
            num_flows=flow_num_flows,
            layers_per_coupling=flow_layers_per_coupling,
            cond_dim=cond_dim,
        )

        # decoder p(motion | z_p, reference, audio)
        self.dec_in = nn.Conv2d(z_channels, h, 3, padding=1)
        self.dec_mid = resnet(h, h)
        self.dec_up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(h, h, 3, padding=1))
            for _ in range(num_downsamples)
        )
        self.dec_blocks = nn.ModuleList(resnet(h, h) for _ in range(num_downsamples))
        self.dec_ref = nn.Conv2d(c, h, 3, padding=1)
        self.dec_fuse = resnet(h, h)
        self.dec_out = nn.Sequential(nn.GroupNorm(g, h), nn.SiLU(), nn.Conv2d(h, c * m, 3, padding=1))

    # ------------------------------------------------------------------------------------ parts
    def audio_condition(self, audio_features: torch.Tensor) -> torch.Tensor:
        """``(B, M, audio_layers, audio_dim) -> (B, cond_dim)``."""
        cfg = self.config
        expected = (cfg.motion_frames, cfg.audio_layers, cfg.audio_dim)
        if audio_features.ndim != 4 or tuple(audio_features.shape[1:]) != expected:
            raise ValueError(f"audio_features must be (B, {', '.join(map(str, expected))}), got {tuple(audio_features.shape)}")
        weights = torch.softmax(self.layer_weights, dim=0).to(audio_features.dtype)
        per_frame = self.audio_frame(torch.einsum("bmld,l->bmd", audio_features, weights))
        return self.audio_cond(per_frame.flatten(1))

    def _check_reference(self, reference_latent: torch.Tensor) -> None:
        cfg = self.config
        factor = 2**cfg.num_downsamples
        if reference_latent.ndim != 4 or reference_latent.shape[1] != cfg.latent_channels:
            raise ValueError(f"reference_latent must be (B, {cfg.latent_channels}, H, W), got {tuple(reference_latent.shape)}")
        if reference_latent.shape[2] % factor or reference_latent.shape[3] % factor:
            raise ValueError(f"latent H and W must be multiples of {factor}, got {tuple(reference_latent.shape[2:])}")

    def encode(
        self, motion_latents: torch.Tensor, reference_latent: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mean, log_std)``, each ``(B, z_channels, H / 2^d, W / 2^d)``."""
        cfg = self.config
        self._check_reference(reference_latent)
        expected = (reference_latent.shape[0], cfg.latent_channels, cfg.motion_frames, *reference_latent.shape[2:])
        if tuple(motion_latents.shape) != expected:
            raise ValueError(f"motion_latents must be {expected}, got {tuple(motion_latents.shape)}")
        x = torch.cat([motion_latents.flatten(1, 2), reference_latent], dim=1)
        h = self.enc_in(x)
        for block, down in zip(self.enc_blocks, self.enc_down):
            h = down(block(h, cond))
        h = self.enc_out(self.enc_mid(h, cond))
        mean, log_std = h.chunk(2, dim=1)
        return mean, log_std

    def decode(self, z_p: torch.Tensor, reference_latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Motion latents ``(B, C, M, H, W)`` from ``z_p`` ``(B, z_channels, h, w)``."""
        cfg = self.config
        h = self.dec_mid(self.dec_in(z_p), cond)
        for up, block in zip(self.dec_up, self.dec_blocks):
            h = block(up(h), cond)
        h = self.dec_fuse(h + self.dec_ref(reference_latent), cond)
        delta = self.dec_out(h).reshape(h.shape[0], cfg.latent_channels, cfg.motion_frames, *h.shape[2:])
        return reference_latent[:, :, None] + delta

    # ------------------------------------------------------------------------------------ use
    def forward(
        self,
        motion_latents: torch.Tensor,
        reference_latent: torch.Tensor,
        audio_features: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> A2MOutput | tuple:
        """Training pass: encode, sample ``z_q``, flow to ``z_p``, decode.

        Args:
            motion_latents: ``(B, C, M, H, W)`` target motion-frame latents.
            reference_latent: ``(B, C, H, W)`` reference image latent.
            audio_features: ``(B, M, audio_layers, audio_dim)`` wav2vec2 features of the M frames.
            noise: ``eps`` ``(B, z_channels, h, w)``; drawn with ``generator`` when None.
        """
        cond = self.audio_condition(audio_features)
        mean, log_std = self.encode(motion_latents, reference_latent, cond)
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z_q = mean + torch.exp(log_std) * noise
        z_p = self.flow(z_q, cond)
        sample = self.decode(z_p, reference_latent, cond)
        out = A2MOutput(sample=sample, mean=mean, log_std=log_std, z_q=z_q, z_p=z_p)
        return out if return_dict else out.to_tuple()

    def latent_shape(self, reference_latent: torch.Tensor) -> tuple[int, int, int, int]:
        cfg = self.config
        factor = 2**cfg.num_downsamples
        batch, _, height, width = reference_latent.shape
        return (batch, cfg.z_channels, height // factor, width // factor)

    @torch.no_grad()
    def generate(
        self,
        reference_latent: torch.Tensor,
        audio_features: torch.Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Inference: ``z_p ~ N(0, temperature^2 I)``, decode -> motion latents ``(B, C, M, H, W)``."""
        self._check_reference(reference_latent)
        cond = self.audio_condition(audio_features)
        z_p = temperature * torch.randn(
            self.latent_shape(reference_latent), generator=generator, device=reference_latent.device, dtype=reference_latent.dtype
        )
        return self.decode(z_p, reference_latent, cond)
