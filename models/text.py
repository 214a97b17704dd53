"""Text conditioning: a small transformer over word tokens (tau_theta of latent diffusion, Rombach et
al. 2022, Sec. 3.3) and cross-attention from image features to its token embeddings.

    tokens [B, L] long (0 = padding)  ->  TextEncoder  ->  context [B, L, D], mask [B, L] (True: a word)
    h [B, C, H, W], context, mask      ->  CrossAttnBlock  ->  h + proj(Attention(Q = W_q h, K = W_k c, V = W_v c))

Padding is masked everywhere: a padded key gets attention weight exactly 0 (`masked_softmax`), so
the output does not depend on how many padding tokens follow the words. The empty prompt (all
padding) attends to nothing: its cross-attention adds exactly 0, the null condition of
classifier-free guidance.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import group_norm, zero_module

Tensor = torch.Tensor


def masked_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """softmax over the last axis restricted to `mask` (broadcastable, True = kept): masked entries
    are exactly 0, and a row with no kept entry is all 0 (not NaN)."""
    logits = logits.masked_fill(~mask, float("-inf"))
    top = logits.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(logits.dtype).min)
    e = torch.exp(logits - top)
    return e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(logits.dtype).tiny)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, heads: int, return_weights: bool = False):
    """Multi-head attention, q `[B, N, E]`, k, v `[B, L, E]`, key mask `[B, L]` -> `[B, N, E]`
    (and the weights `[B, heads, N, L]`)."""
    B, N, E = q.shape
    L = k.shape[1]
    d = E // heads
    q = q.reshape(B, N, heads, d).transpose(1, 2)
    k = k.reshape(B, L, heads, d).transpose(1, 2)
    v = v.reshape(B, L, heads, d).transpose(1, 2)
    w = masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(d), mask[:, None, None, :])
    out = (w @ v).transpose(1, 2).reshape(B, N, E)
    return (out, w) if return_weights else out


class _EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x += SelfAttn(LN(x)); x += MLP(LN(x)) (padding keys masked)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.heads = heads

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        x = x + self.proj(attention(q, k, v, mask, self.heads))
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """tokens `[B, L]` (0 = padding) -> (context `[B, L, dim]` with padded rows 0, mask `[B, L]`).

    Token + learned position embeddings, `depth` pre-norm transformer layers with `heads` heads, a
    final LayerNorm. Padding sits after the words, so positions of words never move with padding.
    """

    def __init__(self, vocab_size: int, dim: int = 64, depth: int = 2, heads: int = 4, max_len: int = 16):
        super().__init__()
        if vocab_size < 2 or dim < 1 or depth < 0 or heads < 1 or dim % heads or max_len < 1:
            raise ValueError(f"TextEncoder needs vocab_size >= 2, dim divisible by heads, depth >= 0, max_len >= 1; "
                             f"got vocab_size={vocab_size}, dim={dim}, depth={depth}, heads={heads}, max_len={max_len}")
        self.vocab_size, self.dim, self.max_len = vocab_size, dim, max_len
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.layers = nn.ModuleList([_EncoderLayer(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor):
        if tokens.dim() != 2 or tokens.is_floating_point():
            raise ValueError(f"tokens must be a [B, L] integer tensor, got {tuple(tokens.shape)} {tokens.dtype}")
        L = tokens.shape[1]
        if L > self.max_len:
            if bool((tokens[:, self.max_len:] != 0).any()):
                raise ValueError(f"prompts of {L} tokens exceed the text encoder's max_len {self.max_len}")
            tokens = tokens[:, :self.max_len]
            L = self.max_len
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got [{int(tokens.min())}, "
                             f"{int(tokens.max())}]")
        mask = tokens != 0
        x = self.tokens(tokens) + self.positions[:L]
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) * mask[..., None], mask


class CrossAttnBlock(nn.Module):
    """h + proj(Attention(W_q GroupNorm(h), W_k c, W_v c)) over the H*W positions of h `[B, C, H, W]`
    and the L tokens of the context `[B, L, D]` (padding masked). `proj` is zero-initialised: a new
    block is the identity."""

    def __init__(self, channels: int, context_dim: int, heads: int = 1, max_groups: int = 32,
                 exact_groups: bool = False):
        super().__init__()
        if channels % heads:
            raise ValueError(f"cross-attention heads {heads} must divide the channels {channels}")
        self.norm = group_norm(channels, max_groups, exact_groups)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(context_dim, channels)
        self.v = nn.Linear(context_dim, channels)
        self.proj = zero_module(nn.Linear(channels, channels, bias=False))   # no bias: "" adds exactly 0
        self.heads = heads

    def forward(self, h: Tensor, context: Tensor, mask: Tensor, return_weights: bool = False):
        B, C, H, W = h.shape
        q = self.q(self.norm(h).reshape(B, C, H * W).transpose(1, 2))
        out, w = attention(q, self.k(context), self.v(context), mask, self.heads, return_weights=True)
        out = h + self.proj(out).transpose(1, 2).reshape(B, C, H, W)
        return (out, w) if return_weights else out
