"""Correctors: Langevin MCMC steps at a fixed time t, targeting p_t.

Every corrector has the signature

    corrector(sde, score_fn, x, t, dt, noise, n_steps, **options) -> (x, x_mean)

and makes `n_steps` score evaluations. `dt` is the sampler's grid step (used
for the VP alpha below).
"""
from __future__ import annotations

import math

import torch

from sde_lib import batch_sum, expand_as_batch

from ._common import check_choice


def langevin_alpha(sde, t, dt):
    """alpha_i of Song et al. 2021, Algorithms 4 (VE) and 5 (VP), per sample `[B]`.

    VE: alpha = 1. VP: alpha_i = 1 - beta_i of the DDPM chain, i.e. the
    squared one-step mean coefficient (m(t) / m(t - dt))^2. sub-VP has the
    same mean coefficient m(t) as VP, so it gets the same alpha (the reference
    implementation reads a DDPM-only table here and fails on sub-VP). The SDE computes it
    (`SDE.langevin_alpha`).
    """
    return sde.langevin_alpha(t, dt)


LANGEVIN_NORMS = ("per_sample", "batch", "expected", "kernel")


def langevin(sde, score_fn, x, t, dt, noise, n_steps, snr, norm="kernel"):
    """Langevin corrector with the step size set by a signal-to-noise ratio
    (Song et al. 2021, Algorithms 4 and 5):

        eps_i = 2 alpha (snr r)^2,   x <- x + eps_i score + sqrt(2 eps_i) z,

    where r = ||z|| / ||score|| is read in one of four ways (`norm`):

    * "per_sample": both norms per sample (over all non-batch dimensions);
    * "batch":      r = mean_b ||z_b|| / mean_b ||score_b||, one step for the whole
                    batch, as in the reference implementation (score_sde); a sample
                    then depends on its batch-mates, so `seeds` lose batch invariance;
    * "expected":   ||z|| replaced by its expectation sqrt(D) (D = non-batch size),
                    ||score|| per sample;
    * "kernel":     both norms replaced by their values under the perturbation kernel,
                    ||z|| -> sqrt(D) and ||score|| -> sqrt(D) / s(t) (the score of
                    N(m x_0, s^2 I)), so r = s(t): a step that depends on t only,
                    eps_i = 2 alpha (snr s(t))^2. For VE this is NCSN's annealed
                    schedule with step_size = 4 snr^2. The default.

    Why "kernel" is the default (measured, docs/bench/langevin-corrector.md): a step that
    depends on the state (per-sample norms) is not a Langevin chain for p_t: samples
    near a mode have small ||score||, take large steps and are thrown out, so the
    chain settles wider than p_t (16-D mixture, exact score, VP, 1000 steps, mean
    log-density relative to true samples: -2.37 nats "per_sample", -1.26 "expected",
    -0.25 "batch", -0.08 "kernel"; the reference implementation -0.25; SE 0.07).
    "kernel" is also batch-invariant, which "batch" is not.
    """
    check_choice("Langevin norm", norm, LANGEVIN_NORMS)
    alpha = langevin_alpha(sde, t, dt)
    tiny = torch.finfo(x.dtype).tiny
    D = x[0].numel()
    mean = x
    for _ in range(n_steps):
        score = score_fn(x, t)
        z = noise.randn()
        score_norm = batch_sum(score ** 2).sqrt()
        if norm == "per_sample":
            ratio = batch_sum(z ** 2).sqrt() / score_norm.clamp_min(tiny)
        elif norm == "batch":
            ratio = (batch_sum(z ** 2).sqrt().mean() / score_norm.mean().clamp_min(tiny)).expand_as(score_norm)
        elif norm == "expected":
            ratio = math.sqrt(D) / score_norm.clamp_min(tiny)
        else:
            ratio = sde.marginal_coeffs(t)[1]
        step = 2 * alpha * (snr * ratio) ** 2
        mean = x + expand_as_batch(step, x) * score
        x = mean + expand_as_batch(torch.sqrt(2 * step), x) * z
    return x, mean


def annealed_langevin(sde, score_fn, x, t, dt, noise, n_steps, step_size):
    """Annealed Langevin dynamics of Song & Ermon (2019, Algorithm 1):

        a_i = step_size * s(t)^2,   x <- x + a_i / 2 score + sqrt(a_i) z,

    with s(t) the marginal std of the SDE (sigma_i for VE). NCSN writes
    a_i = epsilon sigma_i^2 / sigma_L^2; `step_size` = epsilon / sigma_L^2 is the
    same schedule made independent of the smallest level (NCSN on CIFAR-10:
    epsilon = 2e-5, sigma_L = 0.01, i.e. step_size = 0.2). Being relative to
    the noise variance, the same value works for VP, sub-VP (whose s(eps) is
    ~1e-4, not 1e-2) and VE.
    """
    _, s = sde.marginal_coeffs(t)
    a = step_size * s ** 2
    mean = x
    for _ in range(n_steps):
        score = score_fn(x, t)
        mean = x + expand_as_batch(a / 2, x) * score
        x = mean + expand_as_batch(torch.sqrt(a), x) * noise.randn()
    return x, mean


def none(sde, score_fn, x, t, dt, noise, n_steps, **_):
    """No corrector."""
    return x, x


CORRECTORS = {"langevin": langevin, "annealed_langevin": annealed_langevin, "none": none}
