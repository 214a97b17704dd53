"""Sample-quality metrics for low-dimensional checks and benchmarks."""
from __future__ import annotations

from typing import Optional

import torch

Tensor = torch.Tensor


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256,
                       generator: Optional[torch.Generator] = None) -> float:
    """Sliced Wasserstein-1 distance between two sample sets `[n, *dims]`, `[m, *dims]`.

    SW1 = E_theta[ W1(theta^T x, theta^T y) ] over directions theta uniform on the
    sphere, estimated with `n_projections` random directions. The 1-D W1 is the
    L1 distance between the empirical quantile functions, evaluated on the
    midpoints of a grid of max(n, m) levels (exact for n = m: mean |x_(i) - y_(i)|).
    """
    xf, yf = x.reshape(x.shape[0], -1).double(), y.reshape(y.shape[0], -1).double()
    if xf.shape[1] != yf.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {xf.shape[1]} and {yf.shape[1]}")
    theta = torch.randn(xf.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(xf @ theta, dim=0)
    py, _ = torch.sort(yf @ theta, dim=0)
    n, m = px.shape[0], py.shape[0]
    if n != m:
        k = max(n, m)
        levels = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        px = px[(levels * n).long().clamp(max=n - 1)]
        py = py[(levels * m).long().clamp(max=m - 1)]
    return (px - py).abs().mean().item()
