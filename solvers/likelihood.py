"""Exact likelihoods through the probability-flow ODE, and bits per dimension.

Instantaneous change of variables (Chen et al. 2018; Song et al. 2021, App. D):
along the probability-flow ODE dx/dt = f~(x, t) = f(x, t) - 1/2 g(t)^2 score(x, t),

    d log p_t(x_t) / dt = -div f~(x_t, t),

so integrating the augmented state (x, delta) from eps to T,

    log p_eps(x) = log p_T(z) + delta,   z = x_T,   delta = int_eps^T div f~(x_t, t) dt,

with log p_T replaced by the prior's log-density. For our SDEs f(x, t) = a(t) x,
so div f~ = D a(t) - 1/2 g(t)^2 div score: the affine part is exact and only
div score needs autograd:

* trace="exact": div score = sum_j d score_j / d x_j from D vector-Jacobian
  products (one backward pass per coordinate through one forward call).
* trace="hutchinson": div score ~ mean_k v_k^T (d score / dx) v_k with K = `probes`
  probe vectors v_k (Rademacher or Gaussian, E[v v^T] = I), drawn once and
  kept fixed along the trajectory (so the ODE stays an ODE), one VJP each.

NFE counting: `nfe` counts forward calls of score_fn (a batched call is 1).
Each forward call in the likelihood is followed by its backward passes,
counted separately in `vjps`: D per evaluation for the exact trace, K per
evaluation for Hutchinson. A VJP costs about one to two forward passes, so
the cost of a Hutchinson run with K=1 is ~ nfe forward+backward pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch

from sde_lib import expand_as_batch

from ._common import (CountedScore, Timer, check_choice, check_eps, check_positive, check_steps, hutchinson_probes,
                      quiet, score_and_divergence)
from .ode import FIXED_METHODS, METHODS, ODE_NORMS, GuardedTime, _check_finite, adaptive_setup

Tensor = torch.Tensor


@dataclass
class LikelihoodResult:
    """Output of `log_likelihood` (`.value` = logp, `.stderr` None, `.nfe`, `.info`). All per-sample
    tensors are `[B]`, in nats, in x's dtype.

    logp = prior_logp + delta_logp is log p_eps(x); z `[B, *dims]` is the ODE latent at T.
    """
    logp: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    z: Tensor
    nfe: int
    vjps: int
    seconds: float
    options: dict

    # the estimator convention (see solvers._common.Estimate): value, stderr, nfe, info
    @property
    def value(self) -> Tensor:
        return self.logp

    @property
    def stderr(self) -> None:
        """None: the ODE log-likelihood has no Monte Carlo error of its own (Hutchinson's trace
        estimate does add one, not estimated per sample here)."""
        return None

    @property
    def info(self) -> dict:
        return {"prior_logp": self.prior_logp, "delta_logp": self.delta_logp, "z": self.z, "vjps": self.vjps,
                "seconds": self.seconds, "options": self.options}


def log_likelihood(sde, score_fn, x: Tensor, trace: str = "exact", noise: str = "rademacher",
                   probes: int = 1, method: str = "rk45", rtol: float = 1e-5, atol: float = 1e-5,
                   eps: Optional[float] = None, generator: Optional[torch.Generator] = None,
                   steps: Optional[int] = None, norm: str = "sample", controller=None) -> LikelihoodResult:
    """log p_eps(x) in nats for every sample of x `[B, *dims]` (see the module docstring).

    Args:
        trace:  "exact" (D VJPs per evaluation; moderate D) or "hutchinson".
        noise:  Hutchinson probe distribution, "rademacher" or "gaussian".
        probes: number K of Hutchinson probes averaged per evaluation.
        method, rtol, atol, steps: ODE method ("rk45": dopri5 with Dormand-Prince's error estimate,
                see solvers.ode; or a torchdiffeq method) and tolerances (steps for fixed-grid methods).
        eps:    start time (default sde.eps).
        generator: for the Hutchinson probes.
        norm:   error norm of adaptive methods over the (x, delta) state: "sample" (each sample's
                RMS over its x and delta, worst sample decides), "batch" (one RMS over everything)
                or "mixed" (torchdiffeq's default, max of the RMS of x and of delta); see solvers.ode.
        controller: torchdiffeq step-size options of adaptive methods (safety, ifactor, ...).
    """
    check_choice("trace", trace, ("exact", "hutchinson"))
    check_choice("noise", noise, ("rademacher", "gaussian"))
    check_choice("ODE method", method, METHODS)
    check_steps(probes, "probes")
    check_choice("ODE error norm", norm, ODE_NORMS)
    rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
    eps = check_eps(sde, eps)
    _check_finite("x", x)
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got dtype {x.dtype}")
    if method in FIXED_METHODS:
        steps = check_steps(sde.N if steps is None else steps)

    from torchdiffeq import odeint

    qsde = quiet(sde)
    counted = CountedScore(score_fn)
    B, D = x.shape[0], x[0].numel()
    guard = GuardedTime(eps, sde.T)
    vjps = [0]
    v = hutchinson_probes((probes, *x.shape), noise, generator, x.dtype, x.device) if trace == "hutchinson" else None

    def func(t, state):
        xt, _ = state
        tb = guard(t).to(xt.dtype).expand(B)
        drift_coeff = qsde.drift_coeff(tb)
        g2 = qsde.diffusion_coeff(tb) ** 2
        score, div, n_vjp = score_and_divergence(counted, xt, tb, v)
        vjps[0] += n_vjp
        dx = expand_as_batch(drift_coeff, xt) * xt - expand_as_batch(0.5 * g2, xt) * score
        ddelta = D * drift_coeff - 0.5 * g2 * div
        return dx, ddelta

    if method in FIXED_METHODS:
        times = torch.linspace(eps, sde.T, steps + 1, dtype=torch.float64, device=x.device)
        name, options = method, None
    else:
        times = torch.tensor([eps, sde.T], dtype=torch.float64, device=x.device)
        name, options = adaptive_setup(method, norm, B, sde.T, controller)
    state0 = (x.detach(), torch.zeros(B, dtype=x.dtype, device=x.device))
    with Timer() as timer, torch.no_grad():
        xs, deltas = odeint(func, state0, times, method=name, rtol=rtol, atol=atol, options=options)
        z, delta = xs[-1], deltas[-1]
        prior = sde.prior_logp(z)
    return LikelihoodResult(logp=prior + delta, prior_logp=prior, delta_logp=delta, z=z, nfe=counted.nfe,
                            vjps=vjps[0], seconds=timer.seconds,
                            options={"trace": trace, "noise": noise, "probes": probes, "method": method,
                                     "rtol": rtol, "atol": atol, "eps": eps, "steps": steps, "norm": norm, "controller": controller,
                                     "clamped": guard.n_clamped})


_RANGES = {"[-1,1]": (-1.0, 1.0), "[0,1]": (0.0, 1.0)}


def bits_per_dim(logp: Tensor, x_shape: Union[Sequence[int], int], n_bits: int = 8,
                 data_range: Union[str, Tuple[float, float]] = "[-1,1]",
                 num_levels: Optional[int] = None) -> Tensor:
    """Bits per dimension of discrete data, -log2 P(k) / D, from a continuous log-density.

    Setting: levels k in {0, ..., L - 1}^D (L = `num_levels`, default 2^n_bits) are
    dequantised, y = k + u with u ~ U[0, 1)^D, and scaled affinely to the model's range:

        x = lo + (hi - lo) y / L,   so   dx/dy = w := (hi - lo) / L  per dimension.

    A density p_x on x gives the density p_y(y) = p_x(x) w^D on y, and
    -log2 P(k) <= E_u[-log2 p_y(k + u)] (Jensen; Theis et al. 2016), with equality when
    p_y is constant on every bin. Per dimension,

        bpd = -log2 p_y / D = -log p_x(x) / (D ln 2) - log2 w
            = -log p_x(x) / (D ln 2) + log2 L - log2(hi - lo).

    For 8-bit data in [-1, 1]: log2 256 - log2 2 = 7 (the "+7"); in [0, 1]: + 8; for the
    17 levels of the 8x8 digits in [-1, 1]: log2(17/2) = 3.087. The value is the code
    length of the discrete data itself, so it can be compared with any discrete model
    (e.g. a per-pixel histogram) on the same levels; numbers for different L are not
    comparable (an L-level data set scored with 256 bins pays up to log2(256/L) more).

    Args:
        logp:       `[B]` log p_x(x) in nats (e.g. `log_likelihood(...).logp`).
        x_shape:    the batch's shape `(B, *dims)` (e.g. `x.shape`; B must match logp), or the integer D.
        n_bits:     bits per value of the discrete data (8), i.e. L = 2^n_bits ...
        num_levels: ... unless the number of levels L is given (e.g. 17 for the digits).
        data_range: "[-1,1]", "[0,1]", or a pair (lo, hi).
    Returns: `[B]` bits per dimension.
    """
    if not torch.is_tensor(logp) or logp.dim() != 1:
        raise ValueError(f"logp must be a tensor [B] of log-densities, got "
                         f"{tuple(logp.shape) if torch.is_tensor(logp) else type(logp).__name__}")
    if isinstance(x_shape, int) and not isinstance(x_shape, bool):
        D = x_shape
    else:
        dims = tuple(x_shape)
        if len(dims) < 2:
            # a bare `dims` tuple would be ambiguous with (B, *dims): (3, 32, 32) is not 32*32 dims
            raise ValueError(f"x_shape must be the batch shape (B, *dims) or the integer D, got {x_shape!r}")
        if dims[0] != logp.shape[0]:
            raise ValueError(f"logp has {logp.shape[0]} values but x_shape {tuple(dims)} has batch size {dims[0]}")
        D = math.prod(dims[1:])
    if D <= 0:
        raise ValueError(f"x_shape must give D > 0 dimensions, got {x_shape!r}")
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or n_bits <= 0:
        raise ValueError(f"n_bits must be a positive int, got {n_bits!r}")
    if num_levels is None:
        num_levels = 2 ** n_bits
    elif isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
        raise ValueError(f"num_levels must be an int >= 2, got {num_levels!r}")
    if isinstance(data_range, str):
        key = data_range.replace(" ", "")
        if key not in _RANGES:
            raise ValueError(f"unknown data_range {data_range!r}; expected one of {list(_RANGES)} or (lo, hi)")
        lo, hi = _RANGES[key]
    else:
        lo, hi = (float(v) for v in data_range)
    if not hi > lo:
        raise ValueError(f"data_range must have hi > lo, got {data_range!r}")
    offset = math.log2(num_levels) - math.log2(hi - lo)
    return -logp / (D * math.log(2)) + offset
