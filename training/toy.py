"""Generated vector data: the 2-D toy sets and Gaussian mixtures (the mixture with its exact density)."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from configs.errors import InputError
from models.analytic import GaussianMixture

Tensor = torch.Tensor
TOY_SETS = ("moons", "8gaussians", "checkerboard", "swissroll")


def toy_2d(name: str, n: int, generator: torch.Generator, noise: Optional[float] = None) -> Tensor:
    """n points of a 2-D toy set, roughly centred with O(1) spread, `[n, 2]`."""
    g = generator
    if name == "moons":
        noise = 0.05 if noise is None else noise
        theta = math.pi * torch.rand(n, generator=g)
        upper = torch.rand(n, generator=g) < 0.5
        x = torch.where(upper, torch.cos(theta), 1.0 - torch.cos(theta))
        y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
        pts = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5
    elif name == "8gaussians":
        noise = 0.1 if noise is None else noise
        k = torch.randint(0, 8, (n,), generator=g).float()
        angle = k * (2 * math.pi / 8)
        pts = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    elif name == "checkerboard":
        noise = 0.0 if noise is None else noise
        x1 = 4.0 * torch.rand(n, generator=g) - 2.0
        col = torch.floor(x1)
        # rows r in {-2..1} with (col + r) even: r = -2 + 2k + (col mod 2)
        r = -2.0 + 2.0 * torch.randint(0, 2, (n,), generator=g).float() + torch.remainder(col, 2)
        pts = torch.stack([x1, r + torch.rand(n, generator=g)], dim=1)
    elif name == "swissroll":
        noise = 0.1 if noise is None else noise
        theta = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
        pts = torch.stack([theta * torch.cos(theta), theta * torch.sin(theta)], dim=1) / 5.0
    else:
        raise InputError(f"unknown toy data set {name!r}; expected one of {list(TOY_SETS)}")
    if noise:
        pts = pts + noise * torch.randn(n, 2, generator=g)
    return pts


def mixture_distribution(weights, means, stds):
    """The `models.GaussianMixture` sum_k w_k N(mu_k, diag(std_k^2)) of a `data.mixture` config block;
    stds are `[K]` or `[K, D]`. Its `score_fn(sde)` is the exact score of the data under any SDE."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    mu = torch.as_tensor(np.asarray(means, dtype=np.float64))
    sd = torch.as_tensor(np.asarray(stds, dtype=np.float64))
    if mu.dim() != 2 or w.shape != (mu.shape[0],):
        raise InputError(f"mixture needs means [K, D] and weights [K]; got means {tuple(mu.shape)}, "
                         f"weights {tuple(w.shape)}")
    if sd.dim() == 1:
        sd = sd[:, None].expand_as(mu)
    if sd.shape != mu.shape:
        raise InputError(f"mixture stds must be [K] or [K, D] = {tuple(mu.shape)}, got {tuple(sd.shape)}")
    if (w < 0).any() or w.sum() <= 0 or not torch.isfinite(mu).all() or (sd < 0).any():
        raise InputError("mixture weights must be >= 0 with a positive sum, means finite, stds >= 0")
    return GaussianMixture(w, mu, sd ** 2, dtype=torch.float64)


def mixture_samples(weights, means, stds, n: int, generator: torch.Generator) -> Tensor:
    """n draws from sum_k w_k N(mu_k, diag(std_k^2)); stds are `[K]` or `[K, D]`. `[n, D]` float32."""
    return mixture_distribution(weights, means, stds).sample(n, generator=generator).float()
