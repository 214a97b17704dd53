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

Options for the published networks (all off by default; see docs/guide/published-models.md):
- `up_attention`: "per_block" (after every up res block, above) or "per_level" (once per up level,
  after its res blocks: score_sde's NCSN++/DDPM++ and DDPM);
- `resample_skip_conv`: a 1x1 conv on the skip of every BigGAN resampling block (score_sde);
- `fourier_mult`: Fourier embedding width fourier_mult * nf (score_sde: 2); `fourier_product`
  "l_W_2pi": the phase rounded in score_sde's order (models/layers.py);
- `fir`, `fir_kernel`: FIR resampling (models/resample.py; NCSN++ with [1, 3, 3, 1]);
- `progressive_input` "input_skip" | "residual": an input pyramid. After each downsampling, the
  input image, downsampled alongside (parameter-free for input_skip, a conv Downsample for
  residual), joins h: input_skip adds (or concatenates, `progressive_combine` "cat") its 1x1 conv,
  residual replaces both by their (rescaled) sum;
- `progressive` "output_skip" | "residual": an output pyramid. At the end of each up level,
  output_skip upsamples the running output image and adds conv(act(norm(h))) (the net's output is
  that image, no final norm/conv); residual keeps a feature pyramid, upsampled by a conv Upsample,
  summed into h (the lowest level starts it with conv(act(norm(h)))); residual is unverified against
  score_sde_pytorch, whose own version cannot run (docs/guide/published-models.md);
- `downsample_padding` "right_bottom": the strided conv pads right/bottom only (TF "SAME");
- `exact_groups`: exactly num_groups GroupNorm groups (DDPM, diffusers) instead of "at most";
- `cross_attn_resolutions`, `text_vocab_size` (> 0), `text_*`: a prompt-conditional net (models/text.py): a
  text encoder of the tokens `y [B, L]` and a cross-attention block after every res block at those
  resolutions (and in the middle when its resolution is listed); docs/guide/prompts.md;
- `center_input`: the network maps its input u in [0, 1] to 2u - 1 first (score_sde's VE models,
  trained on [0, 1] data: `model.data_range = (0, 1)` feeds it u, see models/parameterization.py).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .layers import (AttnBlock, Downsample, LabelEmbedding, ResBlock, Upsample, group_norm, make_embedding,
                     zero_module)
from .text import CrossAttnBlock, TextEncoder

UNET_CHOICES = _CHOICES = dict(resblock_type=("ddpm", "biggan"), up_attention=("per_block", "per_level"),
                progressive=("none", "output_skip", "residual"), progressive_input=("none", "input_skip", "residual"),
                progressive_combine=("sum", "cat"), downsample_padding=("symmetric", "right_bottom"))

Tensor = torch.Tensor


class PyramidHead(nn.Module):
    """conv3x3(act(norm(h))): the output pyramid's image (or features) at one level."""

    def __init__(self, in_ch: int, out_ch: int, max_groups: int, exact_groups: bool):
        super().__init__()
        self.norm = group_norm(in_ch, max_groups, exact_groups)
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        return self.conv(F.silu(self.norm(h)))


class Combine(nn.Module):
    """Join the input pyramid to h: conv1x1(pyramid) + h ("sum") or [conv1x1(pyramid), h] ("cat")."""

    def __init__(self, pyramid_ch: int, ch: int, method: str):
        super().__init__()
        self.conv = nn.Conv2d(pyramid_ch, ch, 1)
        self.method = method

    def forward(self, pyramid: Tensor, h: Tensor) -> Tensor:
        p = self.conv(pyramid)
        return p + h if self.method == "sum" else torch.cat([p, h], dim=1)


class UNet(nn.Module):
    def __init__(self, image_size: int = 32, num_channels: int = 3, nf: int = 128,
                 ch_mult=(1, 2, 2, 2), num_res_blocks: int = 2, attn_resolutions=(16,),
                 dropout: float = 0.1, embedding_type: str = "positional", fourier_scale: float = 16.0,
                 positional_scale: float = 1000.0, resblock_type: str = "ddpm",
                 skip_rescale: bool = True, num_groups: int = 32, resamp_with_conv: bool = True,
                 num_classes: int = 0, up_attention: str = "per_block", resample_skip_conv: bool = False,
                 fourier_mult: int = 1, fir: bool = False, fir_kernel=(1, 3, 3, 1), progressive: str = "none",
                 progressive_input: str = "none", progressive_combine: str = "sum",
                 downsample_padding: str = "symmetric", exact_groups: bool = False,
                 fourier_product: str = "2pi_l_W", center_input: bool = False,
                 cross_attn_resolutions=(), text_vocab_size: int = 0, text_dim: int = 64, text_depth: int = 2,
                 text_heads: int = 4, text_max_len: int = 16, cross_attn_heads: int = 1):
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
        given = dict(resblock_type=resblock_type, up_attention=up_attention, progressive=progressive,
                     progressive_input=progressive_input, progressive_combine=progressive_combine,
                     downsample_padding=downsample_padding)
        for key, value in given.items():
            if value not in _CHOICES[key]:
                raise ValueError(f"unknown {key} {value!r}; expected one of {sorted(_CHOICES[key])}")
        if isinstance(fourier_mult, bool) or not isinstance(fourier_mult, int) or fourier_mult < 1:
            raise ValueError(f"model.fourier_mult must be an int >= 1, got {fourier_mult!r}")
        self.image_size, self.num_channels = image_size, num_channels
        self.progressive, self.progressive_input, self.skip_rescale = progressive, progressive_input, skip_rescale
        self.center_input = bool(center_input)
        temb_dim = 4 * nf
        embed_dim = nf * fourier_mult if embedding_type == "fourier" else nf
        self.embed = make_embedding(embedding_type, embed_dim, fourier_scale, positional_scale, fourier_product)
        self.temb_mlp = nn.Sequential(nn.Linear(embed_dim, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.label_embed = LabelEmbedding(num_classes, temb_dim)
        self.num_classes = self.label_embed.num_classes
        groups = dict(max_groups=num_groups, exact_groups=exact_groups)
        # prompts (models/text.py): a text encoder and cross-attention after every res block at these resolutions
        xattn_res = tuple(int(r) for r in cross_attn_resolutions)
        if bool(xattn_res) != (text_vocab_size > 0) or (text_vocab_size and num_classes):
            raise ValueError(f"a prompt-conditional U-Net needs both model.cross_attn_resolutions and "
                             f"model.text_vocab_size > 0, and no class labels (num_classes = 0); got "
                             f"{xattn_res}, {text_vocab_size}, num_classes={num_classes}")
        self.text_encoder = TextEncoder(text_vocab_size, text_dim, text_depth, text_heads, text_max_len) \
            if text_vocab_size else None

        def xattn(c):
            return CrossAttnBlock(c, text_dim, cross_attn_heads, **groups)

        def res(cin, cout, resample=None):
            return ResBlock(cin, cout, temb_dim, dropout, skip_rescale, resample, num_groups, fir=fir,
                            fir_kernel=fir_kernel, resample_skip_conv=resample_skip_conv, exact_groups=exact_groups)

        def attn(c):
            return AttnBlock(c, skip_rescale, **groups)

        self.conv_in = nn.Conv2d(num_channels, nf, 3, padding=1)
        # Down path: a flat list; `self._down_kinds` says what each module is.
        self.down = nn.ModuleList()
        kinds = []
        skips = [nf]
        ch, res_now, pyramid_ch = nf, image_size, num_channels
        for i, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.down.append(res(ch, nf * m)); kinds.append("res")
                ch = nf * m
                if res_now in attn_resolutions:
                    self.down.append(attn(ch)); kinds.append("attn")
                if res_now in xattn_res:
                    self.down.append(xattn(ch)); kinds.append("xattn")
                skips.append(ch)
            if i != len(ch_mult) - 1:
                if resblock_type == "biggan":
                    self.down.append(res(ch, ch, "down"))
                else:
                    self.down.append(Downsample(ch, resamp_with_conv, fir=fir, fir_kernel=fir_kernel,
                                                padding=downsample_padding))
                kinds.append("down")
                res_now //= 2
                if progressive_input == "input_skip":
                    self.down.append(Combine(pyramid_ch, ch, progressive_combine)); kinds.append("pyramid")
                    ch = 2 * ch if progressive_combine == "cat" else ch
                elif progressive_input == "residual":
                    self.down.append(Downsample(pyramid_ch, True, out_channels=ch, fir=fir, fir_kernel=fir_kernel,
                                                padding=downsample_padding)); kinds.append("pyramid")
                    pyramid_ch = ch
                skips.append(ch)
        self._down_kinds = kinds
        # parameter-free resampling of the input / output image pyramids (score_sde: the FIR or plain one)
        self.pyramid_down = Downsample(num_channels, False, fir=fir, fir_kernel=fir_kernel)
        self.pyramid_up = Upsample(num_channels, False, fir=fir, fir_kernel=fir_kernel)
        self.mid = nn.ModuleList([res(ch, ch), attn(ch), res(ch, ch)])
        self.mid_xattn = xattn(ch) if res_now in xattn_res else None
        self.up = nn.ModuleList()
        kinds = []
        for i, m in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(res(ch + skips.pop(), nf * m)); kinds.append("res")
                ch = nf * m
                if res_now in attn_resolutions and up_attention == "per_block":
                    self.up.append(attn(ch)); kinds.append("attn")
                if res_now in xattn_res:
                    self.up.append(xattn(ch)); kinds.append("xattn")
            if res_now in attn_resolutions and up_attention == "per_level":
                self.up.append(attn(ch)); kinds.append("attn")
            if progressive == "output_skip":
                self.up.append(PyramidHead(ch, num_channels, **groups)); kinds.append("pyramid")
            elif progressive == "residual":
                first = i == len(ch_mult) - 1
                self.up.append(PyramidHead(ch, ch, **groups) if first else
                               Upsample(pyramid_ch, True, out_channels=ch, fir=fir, fir_kernel=fir_kernel))
                kinds.append("pyramid")
                pyramid_ch = ch
            if i != 0:
                if resblock_type == "biggan":
                    self.up.append(res(ch, ch, "up"))
                else:
                    self.up.append(Upsample(ch, resamp_with_conv, fir=fir, fir_kernel=fir_kernel))
                kinds.append("up")
                res_now *= 2
        assert not skips
        self._up_kinds = kinds
        if progressive != "output_skip":
            self.norm_out = group_norm(ch, num_groups, exact_groups)
            self.conv_out = zero_module(nn.Conv2d(ch, num_channels, 3, padding=1))

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return (a + b) / math.sqrt(2.0) if self.skip_rescale else a + b

    def forward(self, x: Tensor, label: Tensor, y=None) -> Tensor:
        """`y`: class labels `[B]` (or an int) of a class-conditional net; None or num_classes = null label.
        A prompt-conditional net takes token ids `[B, L]` (0 = padding) as `y`; None = the empty prompt."""
        if x.dim() != 4 or x.shape[1] != self.num_channels or x.shape[2] != self.image_size \
                or x.shape[3] != self.image_size:
            raise ValueError(f"UNet expects input [B, {self.num_channels}, {self.image_size}, "
                             f"{self.image_size}], got {tuple(x.shape)}")
        if self.text_encoder is not None:
            tokens = torch.zeros(x.shape[0], 1, dtype=torch.long, device=x.device) if y is None else y
            if tokens.dim() != 2 or tokens.shape[0] != x.shape[0]:
                raise ValueError(f"a prompt-conditional U-Net takes tokens [B, L] = [{x.shape[0]}, L], got "
                                 f"{tuple(tokens.shape)}")
            context, mask = self.text_encoder(tokens.to(x.device))
            y = None
        temb = self.label_embed(self.temb_mlp(self.embed(label.to(x.dtype))), y)
        if self.center_input:      # a network of [0, 1] data (model.data_range) that centres its input itself
            x = 2 * x - 1
        h = self.conv_in(x)
        hs = [h]
        pyramid = x
        for kind, layer in zip(self._down_kinds, self.down):
            if kind == "res":
                h = layer(h, temb)
                hs.append(h)
            elif kind == "attn":
                h = layer(h)
                hs[-1] = h
            elif kind == "xattn":
                h = hs[-1] = layer(h, context, mask)
            elif kind == "down":
                h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
                hs.append(h)
            elif self.progressive_input == "input_skip":
                pyramid = self.pyramid_down(pyramid)
                h = hs[-1] = layer(pyramid, h)
            else:  # residual input pyramid
                pyramid = h = hs[-1] = self._join(layer(pyramid), h)
        h = self.mid[0](h, temb)
        h = self.mid[1](h)
        if self.mid_xattn is not None:
            h = self.mid_xattn(h, context, mask)
        h = self.mid[2](h, temb)
        pyramid = None
        for kind, layer in zip(self._up_kinds, self.up):
            if kind == "res":
                h = layer(torch.cat([h, hs.pop()], dim=1), temb)
            elif kind == "attn":
                h = layer(h)
            elif kind == "xattn":
                h = layer(h, context, mask)
            elif kind == "up":
                h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
            elif self.progressive == "output_skip":
                pyramid = layer(h) if pyramid is None else self.pyramid_up(pyramid) + layer(h)
            elif pyramid is None:  # residual output pyramid, lowest level
                pyramid = layer(h)
            else:
                pyramid = h = self._join(layer(pyramid), h)
        if self.progressive == "output_skip":
            return pyramid
        return self.conv_out(F.silu(self.norm_out(h)))
