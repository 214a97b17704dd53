"""A noise-conditional contrastive image-text model (CLIP, Radford et al. 2021, trained on x_t as
GLIDE's noised CLIP, Nichol et al. 2022, Sec. 2.3): an image encoder f(x_t, t) and a text encoder
g(tokens), both unit-normalised, and a learned scale:

    sim(x_t, t, c) = exp(s) <f(x_t, t), g(c)>          x_t `[B, *shape]`, t `[B]`, c `[B, L]` -> `[B]`

Trained with the symmetric InfoNCE loss over in-batch pairs (`training.contrastive`), whose optimum
is sim = log p_t(x_t | c) / p_t(x_t) + const, so grad_x sim = grad_x log p_t(c | x_t): the gradient
classifier guidance needs (`solvers.contrastive_guidance`). The posterior over a set of K prompts
is softmax_k(sim(x, t, c_k) + log p(c_k)).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .classifier import EncoderClassifier, MLPClassifier
from .text import TextEncoder
from .utils import noise_label

Tensor = torch.Tensor


class ContrastiveModel(nn.Module):
    """`image(x, label) -> [B, E]` (an encoder with E outputs), a `TextEncoder` masked-mean-pooled and
    projected to E, and the log scale s (initialised to log(1 / 0.07), CLIP's)."""

    def __init__(self, image: nn.Module, text: TextEncoder, embed_dim: int):
        super().__init__()
        self.image, self.text = image, text
        self.text_proj = nn.Linear(text.dim, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, x: Tensor, label: Tensor) -> Tensor:
        return F.normalize(self.image(x, label), dim=-1)

    def encode_text(self, tokens: Tensor) -> Tensor:
        """Unit vectors `[B, E]` (the empty prompt: 0)."""
        h, mask = self.text(tokens)
        pooled = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1)
        return F.normalize(self.text_proj(pooled), dim=-1) * mask.any(dim=1, keepdim=True)

    def logits(self, x: Tensor, label: Tensor, tokens: Tensor) -> Tensor:
        """sim of every image with every prompt, `[B, B']`."""
        return self.log_scale.exp() * self.encode_image(x, label) @ self.encode_text(tokens).T

    def forward(self, x: Tensor, label: Tensor, tokens: Tensor) -> Tensor:
        """sim of each image with its own prompt, `[B]`."""
        return self.log_scale.exp() * (self.encode_image(x, label) * self.encode_text(tokens)).sum(-1)


def build_contrastive(c, data, vocab_size: int, max_len: int) -> ContrastiveModel:
    """From a `config.contrastive` block `c` and `config.data` (images: U-Net encoder; vectors: MLP)."""
    text = TextEncoder(vocab_size, c.text_dim, c.text_depth, c.text_heads, max_len)
    if c.image_encoder == "mlp":
        image = MLPClassifier(data.dim, c.embed_dim, hidden=c.hidden, num_blocks=c.num_blocks,
                              embedding_type="fourier")
    else:
        image = EncoderClassifier(data.image_size, data.num_channels, c.embed_dim, nf=c.nf, ch_mult=tuple(c.ch_mult),
                                  num_res_blocks=c.num_res_blocks, dropout=c.dropout, embedding_type="positional")
    return ContrastiveModel(image, text, c.embed_dim)


def get_similarity_fn(sde, net: ContrastiveModel):
    """`fn(x, t, tokens) -> [B]` sim with the noise label of `models.noise_label(sde, t)`."""
    net.eval()

    def similarity_fn(x: Tensor, t: Tensor, tokens: Tensor) -> Tensor:
        return net(x, noise_label(sde, t), tokens.to(x.device))

    similarity_fn.model = net
    return similarity_fn
