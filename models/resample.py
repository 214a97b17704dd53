"""Halving and doubling of feature maps: plain (strided conv, average pool, nearest) and
FIR-filtered (Karras et al. 2020, StyleGAN2; used by NCSN++, Song et al. 2021).

FIR resampling with the separable kernel k (default [1, 3, 3, 1]), K = k k^T / sum(k k^T):

    down:  y = (pad(x) * K)[::2, ::2]                     (blur, then keep every other pixel)
    up:    y = pad(zero_insert(x)) * (4 K)                (zeros between pixels, then blur)

where * is a 2-D correlation (K is symmetric for symmetric k, so correlation = convolution),
pad adds (K-2)//2-ish zeros as `upfirdn` below states, and the factor 4 keeps a constant
image constant after upsampling. FIR downsampling with a 3x3 conv fuses the two (one padding):
the blur, then the conv with stride 2. (FIR upsampling with a conv is refused: see Upsample.)

Shapes: `[B, C, H, W] -> [B, C', H/2, W/2]` (down) or `[B, C', 2H, 2W]` (up).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

Tensor = torch.Tensor


def fir_kernel_2d(k: Sequence[float], device=None, dtype=None) -> Tensor:
    """The normalised 2-D kernel k k^T / sum(k k^T) of a 1-D FIR kernel `k`. `[n, n]`."""
    k = torch.as_tensor(list(k), dtype=torch.float64)
    if k.dim() != 1 or len(k) < 1:
        raise ValueError(f"fir_kernel must be a non-empty sequence of numbers, got {list(k)!r}")
    k2 = torch.outer(k, k)
    return (k2 / k2.sum()).to(device=device, dtype=dtype or torch.float32)


def upfirdn(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> Tensor:
    """Upsample by zero insertion (`up`), pad (`pad[0]` before, `pad[1]` after, both axes),
    correlate every channel with the flipped `kernel` [n, n], keep every `down`-th pixel."""
    B, C, H, W = x.shape
    if up > 1:
        z = x.new_zeros(B, C, H, up, W, up)
        z[:, :, :, 0, :, 0] = x
        x = z.reshape(B, C, H * up, W * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    w = kernel.flip([0, 1]).to(x.dtype)[None, None].expand(C, 1, *kernel.shape)
    return F.conv2d(x, w, stride=down, groups=C)


def fir_downsample(x: Tensor, kernel: Tensor) -> Tensor:
    p = kernel.shape[0] - 2
    return upfirdn(x, kernel, down=2, pad=((p + 1) // 2, p // 2))


def fir_upsample(x: Tensor, kernel: Tensor) -> Tensor:
    p = kernel.shape[0] - 2
    return upfirdn(x, kernel * 4, up=2, pad=((p + 1) // 2 + 1, p // 2))


def _fir_conv_down(x: Tensor, conv: nn.Conv2d, kernel: Tensor) -> Tensor:
    """Blur with padding for both the kernel and the 3x3 conv, then the conv with stride 2."""
    p = kernel.shape[0] - 2 + conv.kernel_size[0] - 1
    x = upfirdn(x, kernel, pad=((p + 1) // 2, p // 2))
    return F.conv2d(x, conv.weight, conv.bias, stride=2)


class Downsample(nn.Module):
    """Halve H and W. Without FIR: stride-2 3x3 conv (`with_conv`) or 2x2 average pooling;
    `padding` "symmetric" pads the conv by one on every side, "right_bottom" by one on the right
    and bottom only (TensorFlow's SAME for stride 2: DDPM, score_sde, diffusers). With FIR: the
    blur of the module docstring (fused with the conv when `with_conv`)."""

    def __init__(self, channels: int, with_conv: bool = True, out_channels: int | None = None,
                 fir: bool = False, fir_kernel=(1, 3, 3, 1), padding: str = "symmetric"):
        super().__init__()
        if padding not in ("symmetric", "right_bottom"):
            raise ValueError(f"unknown downsample padding {padding!r}; expected one of ['right_bottom', 'symmetric']")
        out_channels = out_channels or channels
        if not with_conv and out_channels != channels:
            raise ValueError("a Downsample without conv cannot change the channel count")
        self.fir, self.padding = fir, padding
        if fir:
            self.register_buffer("kernel", fir_kernel_2d(fir_kernel), persistent=False)
            self.conv = nn.Conv2d(channels, out_channels, 3) if with_conv else None
        elif with_conv:
            self.conv = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1 if padding == "symmetric" else 0)
        else:
            self.conv = None

    def forward(self, x):
        if self.fir:
            return _fir_conv_down(x, self.conv, self.kernel) if self.conv is not None else \
                fir_downsample(x, self.kernel)
        if self.conv is None:
            return F.avg_pool2d(x, 2)
        if self.padding == "right_bottom":
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour then an optional 3x3 conv, or the FIR upsampling of
    the module docstring (fused with the conv when `with_conv`)."""

    def __init__(self, channels: int, with_conv: bool = True, out_channels: int | None = None,
                 fir: bool = False, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        out_channels = out_channels or channels
        if not with_conv and out_channels != channels:
            raise ValueError("an Upsample without conv cannot change the channel count")
        if fir and with_conv:
            # score_sde_pytorch's fused version (upsample_conv_2d) cannot run in PyTorch (it slices with a
            # negative step), so no published weights use it: refused rather than guessed.
            raise ValueError("FIR upsampling with a conv (model.fir with resblock_type 'ddpm' or progressive "
                             "'residual') is not supported; use fir=False or resblock_type 'biggan' with "
                             "progressive 'none' or 'output_skip'")
        self.fir = fir
        if fir:
            self.register_buffer("kernel", fir_kernel_2d(fir_kernel), persistent=False)
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1) if with_conv else None

    def forward(self, x):
        if self.fir:
            return fir_upsample(x, self.kernel)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.conv is not None else x


def resample(x: Tensor, direction: str | None, kernel: Tensor | None = None) -> Tensor:
    """Parameter-free resampling inside a BigGAN block: nearest-up / 2x2 mean (kernel None) or FIR."""
    if direction is None:
        return x
    if direction == "up":
        return F.interpolate(x, scale_factor=2.0, mode="nearest") if kernel is None else fir_upsample(x, kernel)
    return F.avg_pool2d(x, 2) if kernel is None else fir_downsample(x, kernel)
