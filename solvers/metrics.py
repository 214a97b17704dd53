"""Sample-quality metrics for checks and benchmarks against a known density.

The sliced Wasserstein distance is a weak, global metric: on a 16-D mixture it
hardly tells a blurred sampler from a good one. `dlogp` (the mean log-density of
the samples under the true p_0, minus that of true samples) sees blur (negative)
and mode collapse (positive) directly. For deterministic samplers the pathwise
error against a tight float64 probability-flow ODE solution from the same x_T
isolates discretisation error, and its slope over steps is the empirical order.

    from solvers.metrics import dlogp, mixture_metrics, pathwise_rms, reference_flow, convergence_order
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import torch

from ._common import Estimate
from .sampling import sample

Tensor = torch.Tensor


def _flat(name: str, x: Tensor) -> Tensor:
    if not torch.is_tensor(x) or x.dim() < 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a tensor [n >= 2, *dims], got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    return x.reshape(x.shape[0], -1).double()


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


def dlogp(x: Tensor, log_prob: Callable[[Tensor], Tensor], reference: Tensor) -> Estimate:
    """Mean log p_0(x) - mean log p_0(reference), in nats, with its standard error.

    `reference` is an independent true sample (same size as x for the best SE);
    `log_prob` maps `[n, *dims]` to `[n]`. Negative: the samples sit in lower-density
    places than true samples (blur, too much spread); positive: they concentrate on
    the modes (collapse, too little spread). Non-finite samples or log-densities
    make the value -inf/nan (never silently dropped). SE = sqrt(var_x/n + var_ref/m).
    """
    lx, lr = log_prob(x).double().reshape(-1), log_prob(reference).double().reshape(-1)
    if lx.shape[0] != x.shape[0] or lr.shape[0] != reference.shape[0]:
        raise ValueError("log_prob must return one value per sample")
    value = (lx.mean() - lr.mean()).item()
    se = math.sqrt(lx.var().item() / lx.shape[0] + lr.var().item() / lr.shape[0])
    return Estimate(value, se)


def component_frequencies(x: Tensor, gm) -> Tensor:
    """Fraction of samples `[K]` assigned to each component of the mixture `gm` (the
    component of largest posterior responsibility w_k N(x; mu_k, Sigma_k) / p(x))."""
    xf = _flat("x", x)
    D = gm.D
    eye = torch.eye(D, dtype=torch.float64)
    logs = []
    for k in range(gm.K):
        d = torch.distributions.MultivariateNormal(gm.means[k].double(),
                                                   covariance_matrix=gm.covs[k].double() + 1e-9 * eye)
        logs.append(gm.weights[k].double().log() + d.log_prob(xf))
    labels = torch.stack(logs, 1).argmax(1)
    return torch.bincount(labels, minlength=gm.K).double() / xf.shape[0]


def component_tv(x: Tensor, gm) -> float:
    """Total variation 1/2 sum_k |freq_k - w_k| between the samples' component
    frequencies and the mixture weights (0: right proportions; a true sample of size
    n has E[TV] ~ sqrt(K / (2 pi n)) from sampling noise alone)."""
    return 0.5 * (component_frequencies(x, gm) - gm.weights.double()).abs().sum().item()


def moment_errors(x: Tensor, gm) -> dict:
    """Mean and covariance error of samples against the mixture's exact moments:
    `mean_err` = |mean(x) - mu| / sqrt(tr Sigma / D) (in units of the average std) and
    `cov_err` = |Cov(x) - Sigma|_F / |Sigma|_F (relative Frobenius error)."""
    xf = _flat("x", x)
    w, mu_k, cov_k = gm.weights.double(), gm.means.double(), gm.covs.double()
    mean = (w[:, None] * mu_k).sum(0)
    second = (w[:, None, None] * (cov_k + mu_k[:, :, None] * mu_k[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    scale = math.sqrt(cov.diagonal().mean().item())
    return {"mean_err": ((xf.mean(0) - mean).norm() / scale).item(),
            "cov_err": ((torch.cov(xf.T) - cov).norm() / cov.norm()).item()}


def mixture_metrics(x: Tensor, gm, generator: Optional[torch.Generator] = None, n_projections: int = 256) -> dict:
    """Every metric of samples x `[n, D]` against the Gaussian mixture gm, with a fresh
    true sample of the same size as reference: dlogp (+ SE), sliced W1, component TV,
    mean and covariance error, and the fraction of finite samples."""
    xf = _flat("x", x)
    finite = torch.isfinite(xf).all(dim=1)
    ref = gm.sample(xf.shape[0], generator=generator).double()
    proj = torch.Generator().manual_seed(0)
    d = dlogp(xf, gm.log_prob, ref)
    out = {"dlogp": d.value, "dlogp_se": d.se, "finite": finite.double().mean().item()}
    if finite.all():
        out.update(sw1=sliced_wasserstein(xf, ref, n_projections, generator=proj), tv=component_tv(xf, gm),
                   **moment_errors(xf, gm))
    else:
        out.update(sw1=math.nan, tv=math.nan, mean_err=math.nan, cov_err=math.nan)
    return out


def reference_flow(sde, score_fn, x_T: Tensor, eps: Optional[float] = None, tol: float = 1e-10,
                   method: str = "dopri8") -> Tensor:
    """The probability-flow ODE solution at eps from x_T, in float64 with an adaptive
    solver at rtol = atol = tol: the reference for `pathwise_rms` (its own error is
    far below that of any fixed-grid sampler measured against it)."""
    x, _ = sample(sde, score_fn, None, "ode", x_T=x_T.double(), eps=eps, method=method, rtol=tol, atol=tol)
    return x


def pathwise_rms(x: Tensor, x_ref: Tensor) -> float:
    """sqrt(mean over samples and coordinates of (x - x_ref)^2): the pathwise error of a
    deterministic sampler against the reference solution from the same x_T."""
    if x.shape != x_ref.shape:
        raise ValueError(f"x and x_ref must have the same shape, got {tuple(x.shape)} and {tuple(x_ref.shape)}")
    return (x.double() - x_ref.double()).pow(2).mean().sqrt().item()


def convergence_order(steps: Sequence[int], errors: Sequence[float]) -> float:
    """Empirical order p: minus the least-squares slope of log(error) against log(steps)
    (error ~ C steps^-p). Needs >= 2 distinct step counts and positive finite errors."""
    s = torch.tensor([float(v) for v in steps], dtype=torch.float64)
    e = torch.tensor([float(v) for v in errors], dtype=torch.float64)
    if s.numel() != e.numel() or s.numel() < 2 or s.unique().numel() < 2:
        raise ValueError(f"need >= 2 distinct step counts with one error each, got steps={list(steps)}, "
                         f"errors={list(errors)}")
    if not (torch.isfinite(e).all() and (e > 0).all() and (s > 0).all()):
        raise ValueError(f"errors and steps must be finite and > 0, got steps={list(steps)}, errors={list(errors)}")
    ls, le = s.log(), e.log()
    ls_c = ls - ls.mean()
    slope = (ls_c * (le - le.mean())).sum() / (ls_c ** 2).sum()
    return -slope.item()
