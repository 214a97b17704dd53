"""The DSM loss against its closed form for Gaussian data and the exact score.

Data x0 ~ N(mu, c^2 I_D). Under an SDE with kernel N(m x0, s^2 I), x_t ~ N(m mu, v I) with
v = m^2 c^2 + s^2, and the exact score is -(x_t - m mu) / v. Writing
x_t - m mu = m c u + s z (u, z independent standard normals),

    s score + z = -(s m c / v) u + (1 - s^2 / v) z = -(s m c / v) u + (m^2 c^2 / v) z,

so E || s score + z ||^2 = D (s^2 m^2 c^2 + m^4 c^4) / v^2 = D m^2 c^2 / v per t, and the
loss is its average over t ~ U(eps, T). With likelihood weighting lambda = g^2 the
integrand is D g^2 m^2 c^2 / (s^2 v). The Monte-Carlo loss must match within a few
standard errors, and a slightly wrong score (wrong data variance) must not.
"""
import math

import pytest
import torch
from scipy.integrate import quad

from sde_lib import VESDE, VPSDE, subVPSDE
from training.losses import continuous_dsm_loss, dsm_loss_per_sample, get_loss_fn, ddpm_loss, smld_loss

D, C = 4, 0.7
MU = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)


def gaussian_score(sde, c, shift=0.0):
    def score_fn(x, t):
        m, s = sde.marginal_coeffs(t)
        v = (m ** 2 * c ** 2 + s ** 2)[:, None]
        return -(x - m[:, None] * (MU + shift)) / v
    return score_fn


def expected_loss(sde, likelihood_weighting):
    def integrand(tf):
        t = torch.tensor([tf], dtype=torch.float64)
        m, s = sde.marginal_coeffs(t)
        v = m ** 2 * C ** 2 + s ** 2
        val = D * m ** 2 * C ** 2 / v
        if likelihood_weighting:
            val = val * sde.diffusion_coeff(t) ** 2 / s ** 2
        return float(val)
    return quad(integrand, sde.eps, sde.T, limit=200, epsabs=0, epsrel=1e-9)[0] / (sde.T - sde.eps)


def mc_loss(sde, score_fn, likelihood_weighting, n, gen):
    x0 = MU + C * torch.randn(n, D, generator=gen, dtype=torch.float64)
    t = sde.eps + (sde.T - sde.eps) * torch.rand(n, generator=gen, dtype=torch.float64)
    z = torch.randn(n, D, generator=gen, dtype=torch.float64)
    per = dsm_loss_per_sample(sde, score_fn, x0, t, z, likelihood_weighting=likelihood_weighting)
    return per.mean().item(), per.std().item() / math.sqrt(n)


@pytest.mark.parametrize("sde,lw", [
    (VPSDE(0.1, 20.0, 1000), False), (VPSDE(0.1, 20.0, 1000), True),
    (subVPSDE(0.1, 20.0, 1000), False), (VESDE(0.01, 5.0, 1000, eps=1e-3), False),
    (VPSDE(0.1, 20.0, 1000, schedule="cosine"), False),
])
def test_dsm_loss_matches_closed_form(sde, lw, gen):
    n = 100000
    expected = expected_loss(sde, lw)
    mean, se = mc_loss(sde, gaussian_score(sde, C), lw, n, gen)
    assert abs(mean - expected) < 4 * se, (mean, expected, se)
    # A wrong score (data std 50% too large, mean off by 0.5 per coordinate) fails the same test.
    wrong_mean, wrong_se = mc_loss(sde, gaussian_score(sde, 1.5 * C, shift=0.5), lw, n, gen)
    assert abs(wrong_mean - expected) > 4 * max(se, wrong_se), (wrong_mean, expected, se)


def test_exact_score_minimises_loss(gen):
    """The DSM loss is minimised by the true score: shrinking or inflating it raises the loss."""
    sde = VPSDE(0.1, 20.0, 1000)
    x0 = MU + C * torch.randn(20000, D, generator=gen, dtype=torch.float64)
    t = sde.eps + (sde.T - sde.eps) * torch.rand(20000, generator=gen, dtype=torch.float64)
    z = torch.randn(20000, D, generator=gen, dtype=torch.float64)
    exact = gaussian_score(sde, C)
    base = dsm_loss_per_sample(sde, exact, x0, t, z).mean()
    for k in (0.9, 1.1):
        other = dsm_loss_per_sample(sde, lambda x, tt: k * exact(x, tt), x0, t, z).mean()
        assert other > base


def test_reduce_mean_divides_by_dims(gen):
    sde = VPSDE()
    x0 = torch.randn(8, 2, 3, 3, generator=gen)
    score = lambda x, t: -x
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = continuous_dsm_loss(sde, score, x0, g1, reduce_mean=False)
    b = continuous_dsm_loss(sde, score, x0, g2, reduce_mean=True)
    assert torch.allclose(a, 18 * b)


def test_discrete_losses_use_levels_and_check_sde(gen):
    vp, ve = VPSDE(N=10), VESDE(N=10)
    x0 = torch.randn(16, 2, generator=gen)
    # DDPM loss with the 'score' -z-free constant: finite, scalar
    assert ddpm_loss(vp, lambda x, t: torch.zeros_like(x), x0, gen).shape == ()
    # With a zero score the DDPM loss is E||z||^2 = D exactly in expectation; SMLD half of it.
    big = torch.randn(50000, 2, generator=gen)
    assert abs(ddpm_loss(vp, lambda x, t: torch.zeros_like(x), big, gen).item() - 2.0) < 0.05
    assert abs(smld_loss(ve, lambda x, t: torch.zeros_like(x), big, gen).item() - 1.0) < 0.03
    with pytest.raises(ValueError, match="VPSDE"):
        ddpm_loss(ve, lambda x, t: x, x0)
    with pytest.raises(ValueError, match="VESDE"):
        smld_loss(vp, lambda x, t: x, x0)
    with pytest.raises(ValueError, match="subVPSDE"):
        get_loss_fn(subVPSDE(), continuous=False)


def test_discrete_levels_lie_on_grid(gen):
    from training.losses import discrete_levels
    t = discrete_levels(VPSDE(N=5), 1000, gen)
    assert set(torch.round(t * 5).long().tolist()) == {1, 2, 3, 4, 5}
