"""Building blocks of the score networks: noise embeddings, residual blocks, attention.

Shapes: images are `[B, C, H, W]`, noise labels `[B]`, embeddings `[B, E]`.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .resample import Downsample, Upsample, fir_kernel_2d, resample  # noqa: F401 (Downsample, Upsample: public here)

Tensor = torch.Tensor


def group_norm(channels: int, max_groups: int = 32, exact: bool = False) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= max_groups that divides `channels`,
    keeping at least 4 channels per group when possible (small nets use few channels).
    `exact`: exactly `max_groups` groups (DDPM's fixed 32; diffusers' norm_num_groups)."""
    if exact:
        if channels % max_groups:
            raise ValueError(f"GroupNorm with exactly {max_groups} groups needs channels divisible by it, "
                             f"got {channels}")
        return nn.GroupNorm(max_groups, channels, eps=1e-6)
    g = max(1, min(max_groups, channels // 4 if channels >= 4 else 1))
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels, eps=1e-6)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters: the residual branch it closes starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of a scalar label (NCSN++):

        emb(l) = [sin(2 pi W l), cos(2 pi W l)],  W ~ N(0, scale^2) fixed (a buffer).

    `[B] -> [B, dim]`; `dim` must be even. `product` fixes the float32 rounding of the phase:
    "2pi_l_W" computes (2 pi l) W, "l_W_2pi" (l W) 2 pi as score_sde_pytorch does (with
    |2 pi W l| in the thousands the two differ by ~1e-5 relative in the network output).
    """

    def __init__(self, dim: int, scale: float = 16.0, product: str = "2pi_l_W"):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        if product not in FOURIER_PRODUCTS:
            raise ValueError(f"unknown fourier_product {product!r}; expected one of {list(FOURIER_PRODUCTS)}")
        self.product = product
        # Drawn from a fixed seed so two models built from one config embed identically
        # whatever the state of the global RNG.
        g = torch.Generator().manual_seed(0)
        self.register_buffer("W", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, label: Tensor) -> Tensor:
        if self.product == "l_W_2pi":
            proj = label[:, None] * self.W[None, :] * 2 * math.pi
        else:
            proj = 2 * math.pi * label[:, None] * self.W[None, :]
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=1)


FOURIER_PRODUCTS = ("2pi_l_W", "l_W_2pi")


class SinusoidalEmbedding(nn.Module):
    """Transformer/DDPM sinusoidal embedding of `scale * label`:

        emb_k = sin(scale l / 10000^(k / (h - 1))),  emb_{h+k} = cos(...),  k < h = dim / 2.

    `scale` (1000 by default) maps t in [0, 1] to the DDPM step range. `[B] -> [B, dim]`.
    """

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs)
        self.scale = float(scale)

    def forward(self, label: Tensor) -> Tensor:
        arg = self.scale * label[:, None].float() * self.freqs[None, :]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1).to(label.dtype)


def make_embedding(kind: str, dim: int, fourier_scale: float, positional_scale: float,
                   fourier_product: str = "2pi_l_W") -> nn.Module:
    if kind == "fourier":
        return GaussianFourierEmbedding(dim, fourier_scale, fourier_product)
    if kind == "positional":
        return SinusoidalEmbedding(dim, positional_scale)
    raise ValueError(f"unknown embedding_type {kind!r}; expected one of ['fourier', 'positional']")


class ResBlock(nn.Module):
    """Residual block conditioned on the noise embedding.

        h = conv(act(norm(x)));  h += dense(act(temb));  h = conv(dropout(act(norm(h))))
        out = (skip(x) + h) / sqrt(2)  if skip_rescale else  skip(x) + h

    `resample` is None (DDPM++ block), "up" or "down" (BigGAN-style block of NCSN++:
    both the residual path and the skip path are resampled inside the block, by nearest-up /
    2x2 average, or by the FIR kernel `fir_kernel` when `fir`). The skip is a 1x1 conv when the
    channels change, and also for every resampling block when `resample_skip_conv` (score_sde's
    BigGAN blocks). The last conv is zero-initialised so every block starts as (a scaled) identity.
    """

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, dropout: float = 0.0,
                 skip_rescale: bool = False, resample: str | None = None, max_groups: int = 32,
                 fir: bool = False, fir_kernel=(1, 3, 3, 1), resample_skip_conv: bool = False,
                 exact_groups: bool = False):
        super().__init__()
        if resample not in (None, "up", "down"):
            raise ValueError(f"resample must be None, 'up' or 'down', got {resample!r}")
        self.resample = resample
        self.skip_rescale = skip_rescale
        self.norm1 = group_norm(in_ch, max_groups, exact_groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb = nn.Linear(temb_dim, out_ch)
        self.norm2 = group_norm(out_ch, max_groups, exact_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_module(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        conv_skip = in_ch != out_ch or (resample is not None and resample_skip_conv)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if conv_skip else nn.Identity()
        self.fir = bool(fir and resample)
        if self.fir:
            self.register_buffer("kernel", fir_kernel_2d(fir_kernel), persistent=False)

    def _resample(self, x):
        return resample(x, self.resample, self.kernel if self.fir else None)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = F.silu(self.norm1(x))
        h = self._resample(h)
        x = self._resample(x)
        h = self.conv1(h)
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        out = self.skip(x) + h
        return out / math.sqrt(2.0) if self.skip_rescale else out


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual:

        out = x + proj(softmax(q^T k / sqrt(C)) v)   (divided by sqrt(2) with skip_rescale)
    """

    def __init__(self, channels: int, skip_rescale: bool = False, max_groups: int = 32, exact_groups: bool = False):
        super().__init__()
        self.norm = group_norm(channels, max_groups, exact_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_module(nn.Conv2d(channels, channels, 1))
        self.skip_rescale = skip_rescale

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        # [B, 1 head, HW, C] for scaled_dot_product_attention
        h = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                           v.transpose(1, 2)[:, None])
        h = h[:, 0].transpose(1, 2).reshape(B, C, H, W)
        out = x + self.proj(h)
        return out / math.sqrt(2.0) if self.skip_rescale else out


class LabelEmbedding(nn.Module):
    """Class-label embedding added to the noise embedding (class-conditional nets; Dhariwal & Nichol 2021):

        temb <- temb + E[y],   E in R^{(num_classes + 1) x dim},

    row `num_classes` is the null label (unconditional; classifier-free guidance trains it by label
    dropout). Zero-initialised, so a new conditional net starts as its unconditional version.
    With num_classes = 0 the module is the identity and takes no labels.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"model.num_classes must be an int >= 0 (0: unconditional), got {num_classes!r}")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim) if num_classes else None
        if self.table is not None:
            nn.init.zeros_(self.table.weight)

    def forward(self, temb: Tensor, y=None) -> Tensor:
        if self.table is None:
            if y is not None:
                raise ValueError("this network is unconditional (model.num_classes = 0) but got class labels y")
            return temb
        B = temb.shape[0]
        if y is None:
            y = self.num_classes
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((B,), y, dtype=torch.long, device=temb.device)
        if not torch.is_tensor(y) or y.is_floating_point() or y.shape != (B,):
            raise ValueError(f"class labels y must be an int or an integer tensor [B] = [{B}], got "
                             f"{tuple(y.shape) if torch.is_tensor(y) else repr(y)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) > self.num_classes):
            raise ValueError(f"class labels must lie in [0, {self.num_classes}] ({self.num_classes} = null label), "
                             f"got values in [{int(y.min())}, {int(y.max())}]")
        return temb + self.table(y.to(temb.device))
