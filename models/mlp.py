"""Residual MLP score network for vector data (2-D toy sets, Gaussian mixtures, tabular).

    x [B, D], label [B] (, y [B] class labels if num_classes > 0)  ->  output [B, D]

    h = Linear(x);  for each block: h = h + W2 silu(LN'(W1 silu(LN(h)) + E temb))   (pre-norm residual)
    out = Linear(silu(LN(h)))   (zero-initialised: the network starts at output 0)
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .layers import LabelEmbedding, make_embedding

Tensor = torch.Tensor


class _Block(nn.Module):
    def __init__(self, hidden: int, temb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.temb = nn.Linear(temb_dim, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h, temb):
        r = self.fc1(F.silu(self.norm1(h))) + self.temb(temb)
        r = self.fc2(self.dropout(F.silu(self.norm2(r))))
        return h + r


class ScoreMLP(nn.Module):
    def __init__(self, dim: int = 2, hidden: int = 128, num_blocks: int = 3, dropout: float = 0.0,
                 embedding_type: str = "fourier", embed_dim: int = 64, fourier_scale: float = 16.0,
                 positional_scale: float = 1000.0, num_classes: int = 0):
        super().__init__()
        if dim <= 0 or hidden <= 0 or num_blocks < 0:
            raise ValueError(f"ScoreMLP needs dim > 0, hidden > 0, num_blocks >= 0; got dim={dim}, "
                             f"hidden={hidden}, num_blocks={num_blocks}")
        self.dim = dim
        self.embed = make_embedding(embedding_type, embed_dim, fourier_scale, positional_scale)
        self.temb_mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.label_embed = LabelEmbedding(num_classes, hidden)
        self.num_classes = self.label_embed.num_classes
        self.fc_in = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([_Block(hidden, hidden, dropout) for _ in range(num_blocks)])
        self.norm_out = nn.LayerNorm(hidden)
        self.fc_out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc_out.weight)
        nn.init.zeros_(self.fc_out.bias)

    def forward(self, x: Tensor, label: Tensor, y=None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"ScoreMLP expects input [B, {self.dim}], got {tuple(x.shape)}")
        temb = self.label_embed(self.temb_mlp(self.embed(label.to(x.dtype))), y)
        h = self.fc_in(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.fc_out(F.silu(self.norm_out(h)))
