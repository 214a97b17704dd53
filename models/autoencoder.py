"""A small convolutional KL-regularised autoencoder (the first stage of latent diffusion, Rombach et
al. 2022, Sec. 3.1, without its perceptual and adversarial losses: those need pretrained weights).

    encoder  q(z | x) = N(mu(x), diag exp(logvar(x))),  x [B, C, H, W] -> mu, logvar [B, c, H/f, W/f]
    decoder  p(x | z) = prod_i DiscGauss(x_i; m_i(z), sigma_ch(i)),  m [B, C, H, W]

The decoder is a *discretised Gaussian on the data's own L levels*: level k (bin centre
(2k + 1)/L - 1, half-width 1/L) has probability Phi((b_hi - m)/sigma) - Phi((b_lo - m)/sigma), the
first and last bins reaching to -inf / +inf, with one learned log sigma per channel. So
-log p(x | z) is a probability of the discrete data, and E_q[-log p(x|z)] + KL is an upper bound
on -log P(x) in the units every pixel model's bits/dim uses.

Downsampling factor f in {1, 2, 4} (f = 1: the same network without downsampling, the no-compression
control); c latent channels. Each level is a residual block and a stride-2 convolution (decoder:
nearest upsampling and a convolution).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn
import torch.nn.functional as F

Tensor = torch.Tensor

FACTORS = (1, 2, 4)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class Autoencoder(nn.Module):
    """KL autoencoder for `[B, num_channels, image_size, image_size]` images on `num_levels` levels
    (model space [-1, 1)). `encode(x) -> (mu, logvar)`, `decode(z) -> m` (decoder means), `log_px(x, z)`
    the discretised-Gaussian log-likelihood per example `[B]` (nats)."""

    def __init__(self, image_size: int, num_channels: int, num_levels: int, f: int = 2, latent_channels: int = 4,
                 nf: int = 32):
        super().__init__()
        if f not in FACTORS:
            raise ValueError(f"downsampling factor f must be one of {FACTORS}, got {f!r}")
        if image_size % f:
            raise ValueError(f"image size {image_size} is not divisible by the downsampling factor {f}")
        if not (isinstance(num_levels, int) and num_levels >= 2):
            raise ValueError(f"num_levels must be an int >= 2 (the data's levels), got {num_levels!r}")
        self.image_size, self.num_channels, self.num_levels = image_size, num_channels, num_levels
        self.f, self.latent_channels = f, latent_channels
        halvings = int(math.log2(f))
        enc = [nn.Conv2d(num_channels, nf, 3, padding=1), _ResBlock(nf)]
        for _ in range(halvings):
            enc += [nn.Conv2d(nf, nf, 3, stride=2, padding=1), _ResBlock(nf)]
        enc += [_norm(nf), nn.SiLU(), nn.Conv2d(nf, 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(latent_channels, nf, 3, padding=1), _ResBlock(nf)]
        for _ in range(halvings):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(nf, nf, 3, padding=1), _ResBlock(nf)]
        dec += [_norm(nf), nn.SiLU(), nn.Conv2d(nf, num_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        # decoder sigma starts at one bin width 2/L, at least 0.1 (a start far below the decoder's error costs
        # thousands of bits per dimension on 8-bit data)
        self.log_sigma = nn.Parameter(torch.full((num_channels,), math.log(max(2.0 / num_levels, 0.1))))

    @property
    def latent_shape(self) -> Tuple[int, int, int]:
        return (self.latent_channels, self.image_size // self.f, self.image_size // self.f)

    def encode(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """x `[B, C, H, W]` -> posterior mean and log-variance, each `[B, c, H/f, W/f]`."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.num_channels, self.image_size, self.image_size):
            raise ValueError(f"autoencoder expects input [B, {self.num_channels}, {self.image_size}, "
                             f"{self.image_size}], got {tuple(x.shape)}")
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        """z `[B, c, H/f, W/f]` (unscaled latents) -> decoder means m `[B, C, H, W]`."""
        if z.dim() != 4 or tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(f"decoder expects latents [B, {', '.join(map(str, self.latent_shape))}], "
                             f"got {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x: Tensor, eps: Tensor) -> Tensor:
        """The training terms `[B, 2]`: (-log p(x | z), KL(q(z | x) || N(0, I))) per dimension of x, nats,
        with z = mu + exp(logvar / 2) eps (reparameterised; eps `[B, c, h, w]` standard normal)."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        D = x[0].numel()
        return torch.stack([-self.log_px(x, z) / D, gaussian_kl(mu, logvar) / D], 1)

    def log_px(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) `[B]` in nats: the discretised Gaussian of the module docstring, summed over pixels."""
        return discretized_gaussian_log_prob(x, self.decode(z), self.log_sigma.view(1, -1, 1, 1),
                                             self.num_levels).flatten(1).sum(1)


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, log_sigma: Tensor, num_levels: int) -> Tensor:
    """log P(x) elementwise for x on the bin centres (2k + 1)/L - 1 of L levels in [-1, 1):
    log(Phi((x + 1/L - m)/s) - Phi((x - 1/L - m)/s)), the first bin from -inf and the last to +inf.
    Computed on the side of the smaller tail (log_ndtr), so it stays finite far from the mean."""
    half = 1.0 / num_levels
    inv = torch.exp(-log_sigma)
    lo = torch.where(x <= -1.0 + 1.5 * half, torch.full_like(x, -math.inf), (x - half - mean) * inv)
    hi = torch.where(x >= 1.0 - 1.5 * half, torch.full_like(x, math.inf), (x + half - mean) * inv)
    flip = (lo + hi) > 0                     # upper tail: Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi)
    a = torch.where(flip, -hi, lo)
    b = torch.where(flip, -lo, hi)
    la, lb = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return lb + torch.log(-torch.expm1((la - lb).clamp(max=-1e-30)))


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example `[B]`, summed over latent dimensions (nats)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def build_autoencoder(config, num_levels: int) -> Autoencoder:
    """The autoencoder of `config.autoencoder` for the images of `config.data` on `num_levels` levels."""
    a = config.autoencoder
    return Autoencoder(config.data.image_size, config.data.num_channels, int(num_levels), f=int(a.f),
                       latent_channels=int(a.latent_channels), nf=int(a.nf))
