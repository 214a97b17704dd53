"""Predictors: one step of a reverse-time solver from t to t - dt.

Every predictor has the signature

    predictor(sde, rsde, x, t, dt, noise) -> (x_next, x_next_mean)

with `x` `[B, *dims]`, `t` `[B]` (all equal), `dt > 0` a float, `rsde` the
reverse SDE built on the counted score and `noise` a `NoiseSource`. Each makes
exactly one score evaluation (`none` makes zero).
"""
from __future__ import annotations

import math

import torch

from sde_lib import expand_as_batch


def euler_maruyama(sde, rsde, x, t, dt, noise):
    """x_{t-dt} = x - [f - g^2 score] dt + g sqrt(dt) z  (Euler-Maruyama on the reverse SDE)."""
    drift, g = rsde.sde(x, t)
    mean = x - drift * dt
    return mean + expand_as_batch(g * math.sqrt(dt), x) * noise.randn(), mean


def reverse_diffusion(sde, rsde, x, t, dt, noise):
    """Reverse of the forward discretisation x_i = x_{i-1} + f_i + G_i z (Song et al. 2021, eq. 46):
    x_{i-1} = x_i - f_i + G_i^2 score + G_i z; DDPM/SMLD chains for VP/VE, Euler chain for sub-VP."""
    f, G = rsde.discretize(x, t, dt)
    mean = x - f
    return mean + expand_as_batch(G, x) * noise.randn(), mean


def ancestral_coeffs(sde, t, dt):
    """(a, b^2, posterior variance) of the one-step forward kernel from t - dt to t.

    The forward process is linear with Gaussian kernel, so
    x_t | x_{t-dt} ~ N(a x_{t-dt}, b^2 I) with a = m(t) / m(t-dt) and
    b^2 = s(t)^2 - a^2 s(t-dt)^2. For VP this is the DDPM step
    (a^2 = 1 - beta_i, b^2 = beta_i); for VE a = 1, b^2 = sigma_i^2 - sigma_{i-1}^2.
    The SDE computes them (`SDE.ancestral_coeffs`; VP gets b^2 = beta_i without cancellation).
    """
    return sde.ancestral_coeffs(t, dt)


def ancestral(sde, rsde, x, t, dt, noise):
    """Ancestral sampling: Tweedie's formula on the one-step kernel gives the exact
    E[x_{t-dt} | x_t] = (x_t + b^2 score(x_t, t)) / a; then add noise:

    * VP: variance b^2 = beta_i (DDPM, Ho et al. 2020, sigma_t^2 = beta_t),
    * VE: the posterior variance sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2
      (SMLD ancestral, Song et al. 2021, eq. 47),
    * sub-VP: the posterior variance b^2 s(t-dt)^2 / s(t), the same rule as VE
    (the SDE's `ancestral_variance` picks it).
    """
    a, b2, post = ancestral_coeffs(sde, t, dt)
    score = rsde.score_fn(x, t)
    mean = (x + expand_as_batch(b2, x) * score) / expand_as_batch(a, x)
    var = sde.ancestral_variance(b2, post)
    return mean + expand_as_batch(torch.sqrt(var), x) * noise.randn(), mean


def probability_flow(sde, rsde, x, t, dt, noise):
    """The reverse-diffusion discretisation applied to the probability-flow ODE (Song et al. 2021,
    the "probability flow" predictor of Table 1): x_{i-1} = x_i - f_i + G_i^2 score / 2, with the
    chain's f_i, G_i (DDPM for VP, SMLD for VE). Deterministic: it draws no noise."""
    f, _ = sde.reverse(rsde.score_fn, probability_flow=True).discretize(x, t, dt)
    mean = x - f
    return mean, mean


def none(sde, rsde, x, t, dt, noise):
    """No predictor (corrector-only sampling, e.g. NCSN's annealed Langevin dynamics)."""
    return x, x


PREDICTORS = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral": ancestral,
    "probability_flow": probability_flow,
    "none": none,
}
