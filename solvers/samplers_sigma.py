"""Samplers written in the scaled variables of Karras et al. (2022): DDIM (with eta),
Euler ancestral, EDM's Heun sampler; and Heun on the probability-flow ODE in t.

Notation. x_t = m(t) x_0 + s(t) z; sigma(t) = s/m (EDM's sigma), lambda = log(m/s)
= -log sigma, and the scaled state xh = x/m. In (xh, sigma) every SDE of this
project becomes the variance-exploding process xh_sigma = x_0 + sigma z, with

    denoiser   D(xh; sigma) = E[x_0 | x_t] = (x + s^2 score(x, t)) / m,
    noise      eps_hat = -s score(x, t) = (xh - D) / sigma,

and the probability-flow ODE reads d xh / d sigma = eps_hat (Karras et al. 2022,
eq. 4 with s(t) = 1 after scaling). VP, sub-VP and VE share one code path through
`sde.marginal_coeffs`; the score is always evaluated at x = m xh.
"""
from __future__ import annotations

import math

import torch

from sde_lib import expand_as_batch

from ._common import check_positive, tweedie_mean
from .sampling import register_sampler


def _coeffs(sde, t, x):
    """(m, s, sigma) at times `t` [B], expanded to x's shape (sigma = s / m)."""
    m, s = sde.marginal_coeffs(t)
    return expand_as_batch(m, x), expand_as_batch(s, x), expand_as_batch(s / m, x)


def _check_eta(eta):
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (0.0 <= eta <= 1.0):
        raise ValueError(f"eta must be a number in [0, 1] (0: deterministic, 1: ancestral), got {eta!r}")
    return float(eta)


def ddim(sde, score, x, ts, noise, callback, *, eta):
    """DDIM (Song, Meng & Ermon 2021, eq. 12) for any Gaussian kernel, from t to t' < t:

        x0_hat = (x + s^2 score) / m,    eps_hat = -s score,
        c      = eta s' sqrt(1 - sigma'^2 / sigma^2),
        x'     = m' x0_hat + sqrt(s'^2 - c^2) eps_hat + c z.

    c^2 is DDIM's sigma_t(eta)^2 = eta^2 (s'^2/s^2)(1 - m^2/m'^2) for VP, written in
    sigma so that it holds for VE and sub-VP too. eta = 0 is deterministic: Euler's
    method on the probability-flow ODE in sigma (order 1), exact when p_0 is a point
    mass. eta = 1 uses the exact posterior variance of x_t' given (x_t, x_0), i.e.
    the ancestral kernel with x_0 replaced by its posterior mean. 1 NFE/step.
    """
    eta = _check_eta(eta)
    B = x.shape[0]
    for i in range(ts.shape[0] - 1):
        t, t2 = ts[i].expand(B), ts[i + 1].expand(B)
        m, s, sig = _coeffs(sde, t, x)
        m2, s2, sig2 = _coeffs(sde, t2, x)
        sc = score(x, t)
        x0 = tweedie_mean(x, sc, m, s)
        if eta == 0.0:
            x = m2 * x0 - s2 * s * sc
        else:
            c = eta * s2 * torch.sqrt(torch.clamp(1 - (sig2 / sig) ** 2, min=0.0))
            x = m2 * x0 - torch.sqrt(s2 ** 2 - c ** 2) * s * sc + c * noise.randn()
        callback(i, x)
    return x


def euler_ancestral(sde, score, x, ts, noise, callback, *, eta):
    """Euler ancestral (as in k-diffusion's `sample_euler_ancestral`) in (xh, sigma):
    split the move sigma -> sigma' into a deterministic Euler step down to sigma_down
    and fresh noise of std sigma_up, with

        sigma_up   = eta sigma' sqrt(1 - sigma'^2 / sigma^2),   sigma_down = sqrt(sigma'^2 - sigma_up^2),
        xh'        = xh + (sigma_down - sigma) eps_hat + sigma_up z,   x' = m' xh'.

    eta = 1: sigma_up^2 is the variance of xh_sigma' given (xh_sigma, x_0) in the
    variance-exploding picture, the ancestral (posterior) kernel. Algebraically this
    is DDIM with the same eta (xh + (sigma_down - sigma) eps_hat = x0_hat +
    sigma_down eps_hat), which the tests check; it is registered on its own with
    the Karras grid it is normally run on. 1 NFE/step.
    """
    eta = _check_eta(eta)
    B = x.shape[0]
    for i in range(ts.shape[0] - 1):
        t, t2 = ts[i].expand(B), ts[i + 1].expand(B)
        m, s, sig = _coeffs(sde, t, x)
        m2, _, sig2 = _coeffs(sde, t2, x)
        d = -s * score(x, t)
        up = eta * sig2 * torch.sqrt(torch.clamp(1 - (sig2 / sig) ** 2, min=0.0))
        down = torch.sqrt(torch.clamp(sig2 ** 2 - up ** 2, min=0.0))
        xh = x / m + (down - sig) * d
        if eta > 0.0:
            xh = xh + up * noise.randn()
        x = m2 * xh
        callback(i, x)
    return x


def heun(sde, score, x, ts, noise, callback):
    """Heun's method (explicit trapezoid, order 2) on the probability-flow ODE in t,
    dx/dt = f - g^2 score / 2; 2 NFE/step."""
    rsde = sde.reverse(score, probability_flow=True)
    B = x.shape[0]
    for i in range(ts.shape[0] - 1):
        t, t2 = ts[i].expand(B), ts[i + 1].expand(B)
        dt = ts[i] - ts[i + 1]
        d1, _ = rsde.sde(x, t)
        d2, _ = rsde.sde(x - d1 * dt, t2)
        x = x - 0.5 * (d1 + d2) * dt
        callback(i, x)
    return x


def _t_of_sigma(sde, sigma):
    """The time with sigma(t) = s/m = sigma (sde_lib's inverse, closed form or guarded solve)."""
    return sde.t_from_edm_sigma(sigma)


def edm(sde, score, x, ts, noise, callback, *, S_churn, S_tmin, S_tmax, S_noise):
    """EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2) in (xh, sigma).

    Step i, sigma_i -> sigma_{i+1}:
      1. churn: gamma = min(S_churn / steps, sqrt(2) - 1) if S_tmin <= sigma_i <= S_tmax
         else 0; sigma_hat = sigma_i (1 + gamma) (capped at sigma(T), where the score
         is defined); xh += sqrt(sigma_hat^2 - sigma_i^2) S_noise z;
      2. Euler: d = eps_hat(xh, sigma_hat), xh' = xh + (sigma_{i+1} - sigma_hat) d;
      3. Heun correction: d' = eps_hat(xh', sigma_{i+1}), xh' = xh + (sigma_{i+1} - sigma_hat)(d + d')/2.
    Every step ends at sigma(eps) > 0, so every step takes the correction (EDM ends at
    sigma = 0 with a final Euler step): 2 NFE/step. S_churn = 0 (default) is the
    deterministic second-order Heun method on the probability-flow ODE in sigma.
    sigma_hat's time is found with `sde.t_from_edm_sigma` (only needed when S_churn > 0).
    """
    if isinstance(S_churn, bool) or not isinstance(S_churn, (int, float)) or not (0.0 <= S_churn < math.inf):
        raise ValueError(f"S_churn must be a finite number >= 0, got {S_churn!r}")
    for name, v in (("S_tmin", S_tmin), ("S_tmax", S_tmax)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
            raise ValueError(f"{name} must be a number >= 0 (a sigma = s/m), got {v!r}")
    S_noise = check_positive("S_noise", S_noise)
    B = x.shape[0]
    steps = ts.shape[0] - 1
    gamma_max = min(S_churn / steps, math.sqrt(2.0) - 1.0)
    T = ts[:1].expand(B)
    sig_T = _coeffs(sde, T, x)[2]
    sigmas = (lambda ms: ms[1] / ms[0])(sde.marginal_coeffs(ts)).double().cpu().tolist()
    m0 = _coeffs(sde, T, x)[0]
    xh = x / m0
    for i in range(steps):
        t, t2 = ts[i].expand(B), ts[i + 1].expand(B)
        m, s, sig = _coeffs(sde, t, x)
        if gamma_max > 0 and S_tmin <= sigmas[i] <= S_tmax:
            sig_hat = torch.minimum(sig * (1 + gamma_max), sig_T)
            xh = xh + torch.sqrt(torch.clamp(sig_hat ** 2 - sig ** 2, min=0.0)) * S_noise * noise.randn()
            t = _t_of_sigma(sde, sig_hat.reshape(B, -1)[:, 0]).to(x.dtype)
            m, s, sig = _coeffs(sde, t, x)
        m2, s2, sig2 = _coeffs(sde, t2, x)
        d = -s * score(m * xh, t)
        xe = xh + (sig2 - sig) * d
        d2 = -s2 * score(m2 * xe, t2)
        xh = xh + (sig2 - sig) * 0.5 * (d + d2)
        callback(i, m2 * xh)
    return m2 * xh


register_sampler("ddim", ddim, options={"eta": 0.0}, schedule="uniform",
                 doc="DDIM, eta in [0, 1] (0: deterministic Euler in sigma, 1: ancestral kernel), 1 NFE/step")
register_sampler("euler_ancestral", euler_ancestral, options={"eta": 1.0}, schedule="karras",
                 doc="Euler ancestral in sigma (k-diffusion), eta in [0, 1], 1 NFE/step")
register_sampler("heun", heun, options={}, schedule="uniform",
                 doc="Heun (order 2) on the probability-flow ODE in t, 2 NFE/step")
register_sampler("edm", edm, options={"S_churn": 0.0, "S_tmin": 0.0, "S_tmax": math.inf, "S_noise": 1.0},
                 schedule="karras",
                 doc="EDM Heun sampler on the Karras sigma grid (rho=7) with S_churn/S_tmin/S_tmax/S_noise, "
                     "2 NFE/step")
