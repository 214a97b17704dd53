"""A configurable noise-conditional U-Net covering NCSN++ and DDPM++ (Song et al. 2021).

    x [B, C, H, W], label [B] (, y [B] class labels if num_classes > 0)  ->  output [B, C, H, W]

The network knows nothing about SDEs: it maps an image and a scalar noise label
to an image. `models.get_score_fn` chooses the label (t for VP/sub-VP, log sigma(t)
for VE) and turns the output into a score (noise prediction / std, or output / sigma).

Layout, for channel multipliers (m_0, ..., m_{L-1}) and image size S:

    conv_in -> for level i: num_res_blocks x [ResBlock(nf m_i) (+ Attn if S/2^i in attn_resolutions)],
                            then downsample (not after the last level)
            -> middle: ResBlock, Attn, ResBlock
            -> for level i reversed: (num_res_blocks + 1) x [concat skip, ResBlock (+ Attn)],
                            then upsample (not after level 0)
            -> GroupNorm, SiLU, conv_out (zero-initialised)

The two families differ in
- noise embedding: NCSN++ uses Gaussian Fourier features, DDPM++ sinusoidal ones;
- resampling: NCSN++ uses BigGAN-style residual blocks that resample inside the
  block, DDPM++ a strided conv / nearest + conv;
- skip rescaling: residual sums divided by sqrt(2) (both families in Song et al.).
Every choice is a config field, so the families are presets, not separate code.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .layers import (AttnBlock, Downsample, LabelEmbedding, ResBlock, Upsample, group_norm, make_embedding,
                     zero_module)

Tensor = torch.Tensor


class UNet(nn.Module):
    def __init__(self, image_size: int = 32, num_channels: int = 3, nf: int = 128,
                 ch_mult=(1, 2, 2, 2), num_res_blocks: int = 2, attn_resolutions=(16,),
                 dropout: float = 0.1, embedding_type: str = "positional", fourier_scale: float = 16.0,
                 positional_scale: float = 1000.0, resblock_type: str = "ddpm",
                 skip_rescale: bool = True, num_groups: int = 32, resamp_with_conv: bool = True,
                 num_classes: int = 0):
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        attn_resolutions = tuple(int(r) for r in attn_resolutions)
        if not ch_mult or any(m <= 0 for m in ch_mult):
            raise ValueError(f"model.ch_mult must be a non-empty tuple of positive ints, got {ch_mult!r}")
        if nf <= 0 or num_res_blocks < 1:
            raise ValueError(f"model.nf must be > 0 and model.num_res_blocks >= 1, got nf={nf}, "
                             f"num_res_blocks={num_res_blocks}")
        halvings = len(ch_mult) - 1
        if image_size <= 0 or image_size % (2 ** halvings):
            raise ValueError(f"image size {image_size} cannot be halved {halvings} times "
                             f"(len(model.ch_mult) - 1); use an image size divisible by {2 ** halvings} "
                             f"or fewer channel multipliers")
        if resblock_type not in ("ddpm", "biggan"):
            raise ValueError(f"unknown resblock_type {resblock_type!r}; expected one of ['biggan', 'ddpm']")
        self.image_size, self.num_channels = image_size, num_channels
        temb_dim = 4 * nf
        self.embed = make_embedding(embedding_type, nf, fourier_scale, positional_scale)
        self.temb_mlp = nn.Sequential(nn.Linear(nf, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.label_embed = LabelEmbedding(num_classes, temb_dim)
        self.num_classes = self.label_embed.num_classes

        def res(cin, cout, resample=None):
            return ResBlock(cin, cout, temb_dim, dropout, skip_rescale, resample, num_groups)

        def attn(c):
            return AttnBlock(c, skip_rescale, num_groups)

        self.conv_in = nn.Conv2d(num_channels, nf, 3, padding=1)
        # Down path: a flat list; `self._down_kinds` says what each module is.
        self.down = nn.ModuleList()
        kinds = []
        skips = [nf]
        ch, res_now = nf, image_size
        for i, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.down.append(res(ch, nf * m)); kinds.append("res")
                ch = nf * m
                if res_now in attn_resolutions:
                    self.down.append(attn(ch)); kinds.append("attn")
                skips.append(ch)
            if i != len(ch_mult) - 1:
                if resblock_type == "biggan":
                    self.down.append(res(ch, ch, "down"))
                else:
                    self.down.append(Downsample(ch, resamp_with_conv))
                kinds.append("down")
                res_now //= 2
                skips.append(ch)
        self._down_kinds = kinds
        self.mid = nn.ModuleList([res(ch, ch), attn(ch), res(ch, ch)])
        self.up = nn.ModuleList()
        kinds = []
        for i, m in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(res(ch + skips.pop(), nf * m)); kinds.append("res")
                ch = nf * m
                if res_now in attn_resolutions:
                    self.up.append(attn(ch)); kinds.append("attn")
            if i != 0:
                if resblock_type == "biggan":
                    self.up.append(res(ch, ch, "up"))
                else:
                    self.up.append(Upsample(ch, resamp_with_conv))
                kinds.append("up")
                res_now *= 2
        assert not skips
        self._up_kinds = kinds
        self.norm_out = group_norm(ch, num_groups)
        self.conv_out = zero_module(nn.Conv2d(ch, num_channels, 3, padding=1))

    def forward(self, x: Tensor, label: Tensor, y=None) -> Tensor:
        """`y`: class labels `[B]` (or an int) of a class-conditional net; None or num_classes = null label."""
        if x.dim() != 4 or x.shape[1] != self.num_channels or x.shape[2] != self.image_size \
                or x.shape[3] != self.image_size:
            raise ValueError(f"UNet expects input [B, {self.num_channels}, {self.image_size}, "
                             f"{self.image_size}], got {tuple(x.shape)}")
        temb = self.label_embed(self.temb_mlp(self.embed(label.to(x.dtype))), y)
        h = self.conv_in(x)
        hs = [h]
        for kind, layer in zip(self._down_kinds, self.down):
            if kind == "res":
                h = layer(h, temb)
                hs.append(h)
            elif kind == "attn":
                h = layer(h)
                hs[-1] = h
            else:  # down
                h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
                hs.append(h)
        h = self.mid[0](h, temb)
        h = self.mid[1](h)
        h = self.mid[2](h, temb)
        for kind, layer in zip(self._up_kinds, self.up):
            if kind == "res":
                h = layer(torch.cat([h, hs.pop()], dim=1), temb)
            elif kind == "attn":
                h = layer(h)
            else:  # up
                h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))
