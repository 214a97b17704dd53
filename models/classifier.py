"""Noise-conditional classifiers p_t(y | x_t) for classifier guidance (Song et al. 2021, App. I;
Dhariwal & Nichol 2021): the encoder half of the U-Net (images) or the residual MLP (vectors),
fed the same noise label as the score network, ending in K logits.

    x [B, *shape], label [B]  ->  logits [B, K]

`get_classifier(config)` builds one from `config.classifier`; `get_classifier_fn(sde, net)` gives
`fn(x, t) -> [B, K]` logits with the noise label of `models.noise_label(sde, t)`, the
`log_prob_fn` that `solvers.classifier_guidance` takes. A classifier of clean data (the
evaluation classifier) is the same net trained with `classifier.noise_conditional = False`.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .layers import Downsample, ResBlock, group_norm, make_embedding
from .mlp import _Block
from .utils import noise_label

Tensor = torch.Tensor


class EncoderClassifier(nn.Module):
    """conv_in -> per level: num_res_blocks ResBlocks (noise-conditioned), downsample (not after the
    last) -> GroupNorm, SiLU, global average pool -> Linear(K)."""

    def __init__(self, image_size: int, num_channels: int, num_classes: int, nf: int = 32, ch_mult=(1, 2),
                 num_res_blocks: int = 1, dropout: float = 0.1, embedding_type: str = "positional",
                 fourier_scale: float = 16.0, positional_scale: float = 1000.0, num_groups: int = 32):
        super().__init__()
        if num_classes < 2 or nf <= 0 or num_res_blocks < 1 or not ch_mult:
            raise ValueError(f"classifier needs num_classes >= 2, nf > 0, num_res_blocks >= 1, non-empty ch_mult; "
                             f"got {num_classes}, {nf}, {num_res_blocks}, {ch_mult}")
        self.image_size, self.num_channels, self.num_classes = image_size, num_channels, num_classes
        temb_dim = 4 * nf
        self.embed = make_embedding(embedding_type, nf, fourier_scale, positional_scale)
        self.temb_mlp = nn.Sequential(nn.Linear(nf, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.conv_in = nn.Conv2d(num_channels, nf, 3, padding=1)
        layers, ch = [], nf
        for i, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(ch, nf * m, temb_dim, dropout, True, None, num_groups))
                ch = nf * m
            if i != len(ch_mult) - 1:
                layers.append(Downsample(ch))
        self.layers = nn.ModuleList(layers)
        self.norm_out = group_norm(ch, num_groups)
        self.head = nn.Linear(ch, num_classes)

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.num_channels, self.image_size, self.image_size):
            raise ValueError(f"classifier expects input [B, {self.num_channels}, {self.image_size}, "
                             f"{self.image_size}], got {tuple(x.shape)}")
        temb = self.temb_mlp(self.embed(label.to(x.dtype)))
        h = self.conv_in(x)
        for layer in self.layers:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
        return self.head(F.silu(self.norm_out(h)).mean(dim=(2, 3)))


class MLPClassifier(nn.Module):
    """Residual MLP (the blocks of `ScoreMLP`) with K logits, for vector data."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 128, num_blocks: int = 3, dropout: float = 0.0,
                 embedding_type: str = "fourier", embed_dim: int = 64, fourier_scale: float = 16.0,
                 positional_scale: float = 1000.0):
        super().__init__()
        if num_classes < 2 or dim <= 0 or hidden <= 0:
            raise ValueError(f"classifier needs num_classes >= 2, dim > 0, hidden > 0; got {num_classes}, {dim}, "
                             f"{hidden}")
        self.dim, self.num_classes = dim, num_classes
        self.embed = make_embedding(embedding_type, embed_dim, fourier_scale, positional_scale)
        self.temb_mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.fc_in = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([_Block(hidden, hidden, dropout) for _ in range(num_blocks)])
        self.norm_out = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"classifier expects input [B, {self.dim}], got {tuple(x.shape)}")
        temb = self.temb_mlp(self.embed(label.to(x.dtype)))
        h = self.fc_in(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.head(F.silu(self.norm_out(h)))


CLASSIFIERS = ("encoder", "mlp")


def get_classifier(config) -> nn.Module:
    """The classifier of `config.classifier` for the data of `config.data` (images: encoder, vectors: MLP)."""
    c, d = config.classifier, config.data
    K = int(c.num_classes)
    if c.name == "encoder":
        return EncoderClassifier(d.image_size, d.num_channels, K, nf=c.nf, ch_mult=tuple(c.ch_mult),
                                 num_res_blocks=c.num_res_blocks, dropout=c.dropout,
                                 embedding_type="positional", num_groups=c.num_groups)
    if c.name == "mlp":
        return MLPClassifier(d.dim, K, hidden=c.hidden, num_blocks=c.num_blocks, dropout=c.dropout,
                             embedding_type="fourier")
    raise ValueError(f"unknown classifier name {c.name!r}; expected one of {list(CLASSIFIERS)}")


def get_classifier_fn(sde, classifier: nn.Module, noise_conditional: bool = True):
    """`fn(x, t) -> [B, K]` logits. A clean-data classifier (noise_conditional=False) ignores t (label 0)."""
    classifier.eval()

    def classifier_fn(x: Tensor, t: Tensor) -> Tensor:
        label = noise_label(sde, t) if noise_conditional else torch.zeros_like(t)
        return classifier(x, label)

    classifier_fn.model = classifier
    return classifier_fn
