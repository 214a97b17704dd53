"""The SDE evidence lower bound on log p_eps(x), and importance sampling of t.

Song, Durkan, Murray & Ermon (2021), "Maximum likelihood training of score-based
diffusion models", Thm. 3, and Huang, Lim & Courville (2021): the forward SDE started
at x at time eps is a variational posterior over paths for the model's reverse SDE
(score s, prior pi at T). With q_t = q(x_t | x_eps = x),

    log p_eps(x) >= E_{q_T}[log pi(x_T)]
                    - 1/2 int_eps^T E_{q_t}[ g^2 ||s - grad log q_t||^2 - g^2 ||grad log q_t||^2 - 2 div f ] dt.

Integrating the cross term by parts, E_q[-s . grad log q] = E_q[div s], gives the form
estimated here (no 1/std(t) singularity at t = eps, so every draw is finite):

    ELBO(x) = E_{q_T}[log pi(x_T)] - int_eps^T E_{q_t}[ 1/2 g^2 ||s||^2 + g^2 div s - div f ] dt.

For our SDEs f = a(t) x (div f = D a(t)) and the kernel from eps to t is Gaussian,
x_t = k x + sigma z with k = m(t)/m(eps), sigma^2 = s(t)^2 - k^2 s(eps)^2 (m, s: the
marginal coefficients from 0). The prior term is closed form for pi = N(0, P^2 I).
The bound is tight when s is the true score of p_t and pi = p_T: the model's path
measure is then the forward process itself, whose conditional given x_eps = x is q.

Monte Carlo over t: t ~ p(t) ∝ g(t)^2 / s(t)^2 on [eps, T] (`TimeProposal`), the
integrand divided by p(t). Near eps the integrand behaves like -D g^2 / (2 s^2), so
this proposal flattens it; the same proposal turns likelihood-weighted score matching
into the plain noise-prediction loss times a constant (`training.losses`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from sde_lib import batch_sum, expand_as_batch

from ._common import (CountedScore, Timer, check_choice, check_eps, check_steps, hutchinson_probes, quiet,
                      random_device,
                      score_and_divergence)

Tensor = torch.Tensor


class TimeProposal:
    """Density p(t) ∝ g(t)^2 / s(t)^2 on [eps, T] (or uniform), exactly piecewise constant.

    The interval is cut into `cells` geometric cells (fine near eps, where g^2/s^2 ~ 1/t);
    a cell is chosen with probability equal to its integral of g^2/s^2 and t is uniform in
    it. The density used for the weights is that piecewise-constant one, so estimates are
    unbiased whatever the grid; the grid only decides how close p is to g^2/s^2.
    `mass` is int_eps^T g^2/s^2 dt (Simpson on each cell).
    """

    def __init__(self, sde, eps: Optional[float] = None, cells: int = 2048, kind: str = "likelihood"):
        check_choice("time proposal", kind, ("likelihood", "uniform"))
        eps = check_eps(sde, eps)
        self.eps, self.T, self.kind = eps, float(sde.T), kind
        i = torch.arange(cells + 1, dtype=torch.float64)
        self.edges = eps * (self.T / eps) ** (i / cells)
        self.edges[0], self.edges[-1] = eps, self.T
        self.widths = self.edges[1:] - self.edges[:-1]
        if kind == "uniform":
            mass = self.widths.clone()
        else:
            q = quiet(sde)
            lo, hi = self.edges[:-1], self.edges[1:]

            def h(t):
                return q.diffusion_coeff(t) ** 2 / q.marginal_coeffs(t)[1] ** 2
            mass = self.widths / 6 * (h(lo) + 4 * h((lo + hi) / 2) + h(hi))
        self.mass = float(mass.sum())
        self.probs = mass / mass.sum()
        self.density = self.probs / self.widths

    def sample(self, n: int, generator: Optional[torch.Generator] = None, dtype=torch.float32, device=None):
        """(t `[n]`, p(t) `[n]`) in `dtype` on `device`. Drawn on the generator's device (the CPU
        without one), then moved: a CUDA generator draws on CUDA, a CPU one on the CPU."""
        at = random_device(generator, "cpu")
        cell = torch.multinomial(self.probs.to(at), n, replacement=True, generator=generator)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=at)
        t = (self.edges.to(at)[cell] + u * self.widths.to(at)[cell]).clamp(self.eps, self.T)
        return t.to(dtype=dtype, device=device), self.density.to(at)[cell].to(dtype=dtype, device=device)


@dataclass
class ElboResult:
    """Output of `elbo` (`.value`, `.stderr`, `.nfe`, `.info`). Per-sample tensors are `[B]`, nats, in x's dtype.

    elbo: the Monte Carlo estimate of the bound on log p_eps(x); stderr: its Monte Carlo
    standard error (over the n_t draws of t, x_t and probes); prior: E_q[log pi(x_T)].
    """
    elbo: Tensor
    stderr: Tensor
    prior: Tensor
    nfe: int
    vjps: int
    seconds: float
    options: dict

    # the estimator convention (see solvers._common.Estimate): value, stderr, nfe, info
    @property
    def value(self) -> Tensor:
        return self.elbo

    @property
    def info(self) -> dict:
        return {"prior": self.prior, "vjps": self.vjps, "seconds": self.seconds, "options": self.options}


def elbo(sde, score_fn, x: Tensor, n_t: int = 32, trace: str = "hutchinson", noise: str = "rademacher",
         eps: Optional[float] = None, proposal: str = "likelihood", generator: Optional[torch.Generator] = None,
         chunk: int = 1024, prior_logp: Optional[Callable[[Tensor], Tensor]] = None) -> ElboResult:
    """Monte Carlo estimate of the SDE ELBO on log p_eps(x) for every sample of x `[B, *dims]`.

    Args:
        n_t:       draws of (t, x_t[, probe]) per sample.
        trace:     div s by "exact" (D VJPs per call) or "hutchinson" (one probe per draw; the
                   default, unlike `log_likelihood`'s "exact": the Monte Carlo over t dominates the
                   ELBO's error, so the probe adds 1-3% to its standard error at a cost D times
                   lower; `python bench/elbo_trace.py`, bench/results/elbo_trace.json).
        noise:     Hutchinson probes, "rademacher" or "gaussian".
        proposal:  "likelihood" (t ∝ g^2/s^2, the default) or "uniform".
        chunk:     rows (sample x draw) per score call.
        prior_logp: log-density of the prior at T (default: the SDE's N(0, P^2 I), whose
                   expectation is then closed form); given, it is averaged over the draws
                   of x_T (e.g. the exact log p_T of a test mixture).
    """
    check_choice("trace", trace, ("exact", "hutchinson"))
    check_choice("noise", noise, ("rademacher", "gaussian"))
    n_t, chunk = check_steps(n_t, "n_t"), check_steps(chunk, "chunk")
    if n_t < 2:
        raise ValueError(f"n_t must be >= 2 to give a standard error, got {n_t}")
    if not torch.is_tensor(x) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor [B, *dims], got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if not torch.isfinite(x).all():
        raise ValueError("x has NaN/inf values")
    eps = check_eps(sde, eps)
    prop = TimeProposal(sde, eps, kind=proposal)
    qsde = quiet(sde)
    counted = CountedScore(score_fn)
    B, dims, D = x.shape[0], x.shape[1:], x[0].numel()
    dt, dev = x.dtype, x.device
    at = random_device(generator, dev)          # every draw on the generator's own device, then moved
    t_eps = torch.full((1,), eps, dtype=torch.float64)
    m_eps, s_eps = (v.item() for v in qsde.marginal_coeffs(t_eps))
    vjps = 0
    draws = torch.empty(B * n_t, dtype=dt, device=dev)
    prior_draws = torch.zeros(B * n_t, dtype=dt, device=dev)
    rows = torch.arange(B, device=dev).repeat_interleave(n_t)            # draw r belongs to sample rows[r]
    with Timer() as timer:
        for lo in range(0, B * n_t, chunk):
            r = rows[lo:lo + chunk]
            n = r.numel()
            t, p = prop.sample(n, generator, dt, dev)
            m, s = qsde.marginal_coeffs(t)
            k = m / m_eps
            sigma = torch.sqrt(torch.clamp(s ** 2 - k ** 2 * s_eps ** 2, min=0.0))
            z = torch.randn((n, *dims), generator=generator, dtype=dt, device=at).to(dev)
            xt = expand_as_batch(k, z) * x[r] + expand_as_batch(sigma, z) * z
            g2 = qsde.diffusion_coeff(t) ** 2
            v = hutchinson_probes((1, *xt.shape), noise, generator, dt, dev) if trace == "hutchinson" else None
            score, div, n_vjp = score_and_divergence(counted, xt, t, v)
            vjps += n_vjp
            integrand = 0.5 * g2 * batch_sum(score ** 2) + g2 * div - D * qsde.drift_coeff(t)
            draw = -integrand / p
            if prior_logp is not None:
                kT, sT = _kernel(qsde, sde.T, m_eps, s_eps, dt, dev)
                zT = torch.randn((n, *dims), generator=generator, dtype=dt, device=at).to(dev)
                prior_draws[lo:lo + n] = prior_logp(kT * x[r] + sT * zT)
            draws[lo:lo + n] = draw
    draws = (draws + prior_draws).reshape(B, n_t)
    if prior_logp is None:
        kT, sT = _kernel(qsde, sde.T, m_eps, s_eps, dt, dev)
        P2 = float(sde.prior_std()) ** 2
        prior = (-0.5 * D * math.log(2 * math.pi * P2)
                 - (kT ** 2 * batch_sum(x.detach() ** 2) + D * sT ** 2) / (2 * P2))
        est = draws.mean(1) + prior
    else:                                   # the prior draws are inside `draws`
        prior, est = prior_draws.reshape(B, n_t).mean(1), draws.mean(1)
    se = draws.std(1) / math.sqrt(n_t)
    return ElboResult(elbo=est, stderr=se, prior=prior,
                      nfe=counted.nfe, vjps=vjps, seconds=timer.seconds,
                      options={"n_t": n_t, "trace": trace, "noise": noise, "eps": eps, "proposal": proposal})


def _kernel(qsde, t: float, m_eps: float, s_eps: float, dtype, device):
    """(k, sigma) of the Gaussian kernel x_t | x_eps: x_t = k x_eps + sigma z, as Python floats."""
    m, s = (v.item() for v in qsde.marginal_coeffs(torch.full((1,), t, dtype=torch.float64)))
    k = m / m_eps
    return k, math.sqrt(max(s ** 2 - k ** 2 * s_eps ** 2, 0.0))
