"""ddim (eta), euler_ancestral, heun and edm against closed forms.

Order problem: Gaussian data N(mu, diag(lam)) with lam spanning 0.05..1, where the
probability-flow map x_T -> x_eps is linear and known (`exact_flow`); 64 paths,
float64, steps 16/32/64 on each sampler's default grid. There the error ratios are
in the asymptotic regime on VP, sub-VP and VE (at 4-8 steps they are not yet).
"""
import math

import pytest
import torch

from models.analytic import GaussianMixture, make_mixture
from sde_lib import VESDE, VPSDE, subVPSDE
from solvers import sample
from solvers.metrics import convergence_order, dlogp, pathwise_rms
from solvers.predictors import ancestral_coeffs

from test_registry import exact_flow
from test_solvers_helpers import assert_matches_mixture

SDES = {"vp": VPSDE, "subvp": subVPSDE, "ve": VESDE}
LAM = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64)
MU = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64)


@pytest.fixture(scope="module")
def gauss():
    return GaussianMixture(torch.ones(1), MU[None], LAM[None])


@pytest.fixture(scope="module")
def gm4():
    return make_mixture("random", D=4, K=3, scale=2.0, std=0.5, generator=torch.Generator().manual_seed(3))


ORDERS = [("ddim", {}, 1), ("euler_ancestral", {"eta": 0.0}, 1), ("heun", {}, 2), ("edm", {}, 2)]


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("name,opts,order", ORDERS, ids=[o[0] for o in ORDERS])
def test_empirical_order(name, opts, order, sde_name, gauss):
    sde = SDES[sde_name]()
    x_T = sde.prior_sampling((64, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = exact_flow(sde, x_T, sde.eps, MU, LAM)
    steps = [16, 32, 64]
    errs = [pathwise_rms(sample(sde, gauss.score_fn(sde), None, name, x_T=x_T, steps=n, **opts)[0], ref)
            for n in steps]
    p = convergence_order(steps, errs)
    assert abs(p - order) < 0.35 if order == 2 else abs(p - order) < 0.15, (name, sde_name, errs, p)


def test_euler_ancestral_is_ddim_in_sigma(gauss):
    """xh + (sigma_down - sigma) eps_hat = x0_hat + sigma_down eps_hat: the two samplers agree
    path by path for every eta on the same grid and noise."""
    for sde in (VPSDE(), subVPSDE(), VESDE()):
        sf = gauss.score_fn(sde)
        for eta in (0.0, 0.5, 1.0):
            kw = dict(steps=12, schedule="karras", eta=eta, dtype=torch.float64)
            a, _ = sample(sde, sf, (32, 3), "ddim", generator=torch.Generator().manual_seed(2), **kw)
            b, _ = sample(sde, sf, (32, 3), "euler_ancestral", generator=torch.Generator().manual_seed(2), **kw)
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_eta0_is_the_deterministic_step(gauss):
    """eta=0: x' = m' x0_hat - s' s score, no noise drawn (two generators give the same path)."""
    sde = VPSDE()
    sf = gauss.score_fn(sde)
    x_T = sde.prior_sampling((16, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, info = sample(sde, sf, None, "ddim", x_T=x_T, steps=1, eps=0.4)
    t = torch.tensor([sde.T, 0.4], dtype=torch.float64)
    m, s = sde.marginal_coeffs(t)
    sc = sf(x_T, t[:1].expand(16))
    torch.testing.assert_close(a, m[1] * (x_T + s[0] ** 2 * sc) / m[0] - s[1] * s[0] * sc)
    b, _ = sample(sde, sf, None, "ddim", x_T=x_T, steps=1, eps=0.4, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b) and info.options["eta"] == 0.0


def test_ddim_eta1_is_the_ancestral_kernel(gauss):
    """eta=1, one step t -> t' from a fixed x_t: x' ~ N((x + b^2 score) / a, b^2 s'^2 / s^2), the
    posterior of x_t' given (x_t, x_0) with x_0 replaced by Tweedie's mean (a = m/m',
    b^2 = s^2 - a^2 s'^2). Checked in distribution on VP and sub-VP (20000 draws: mean within
    5 SE, variance within 5 SE), and path by path against the `ancestral` sampler on VE,
    whose kernel it is exactly."""
    n = 20000
    for sde in (VPSDE(), subVPSDE()):
        sf = gauss.score_fn(sde)
        x_t = torch.tensor([[0.3, -0.8, 1.1]], dtype=torch.float64)
        t0, t1 = 0.6, 0.35
        x = _one_step(sde, sf, x_t.expand(n, 3), t0, t1, "ddim", eta=1.0)
        t = torch.tensor([t0], dtype=torch.float64)
        a, b2, post = ancestral_coeffs(sde, t, t0 - t1)
        mean = (x_t + b2 * sf(x_t, t)) / a
        se_mean = (post / n).sqrt()
        assert ((x.mean(0) - mean[0]).abs() < 5 * se_mean).all(), (x.mean(0), mean)
        var = x.var(0)
        assert ((var - post).abs() < 5 * post * math.sqrt(2 / n)).all(), (var, post)
    sde = VESDE()
    sf = gauss.score_fn(sde)
    kw = dict(steps=20, dtype=torch.float64)
    a, _ = sample(sde, sf, (64, 3), "ddim", eta=1.0, generator=torch.Generator().manual_seed(3), **kw)
    b, _ = sample(sde, sf, (64, 3), "ancestral", generator=torch.Generator().manual_seed(3), **kw)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def _one_step(sde, sf, x, t0, t1, name, **opts):
    """One step of a registered fixed-grid sampler on the grid [t0, t1]."""
    from solvers import SAMPLERS
    from solvers._common import NoiseSource, quiet
    ts = torch.tensor([t0, t1], dtype=torch.float64)
    noise = NoiseSource(x.shape, torch.float64, None, generator=torch.Generator().manual_seed(4))
    return SAMPLERS[name].fn(quiet(sde), sf, x.clone(), ts, noise, lambda i, x: None, **opts)


CASES = [("ddim", dict(eta=1.0, steps=100)), ("euler_ancestral", dict(steps=100)), ("edm", dict(steps=20)),
         ("edm", dict(steps=40, S_churn=20.0, S_tmin=0.01, S_tmax=10.0, S_noise=1.003))]


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("name,opts", CASES, ids=["ddim-eta1", "euler_ancestral", "edm", "edm-churn"])
def test_reproduces_mixture(name, opts, sde_name, gm4):
    sde = SDES[sde_name]()
    n = 2000
    x, info = sample(sde, gm4.score_fn(sde), (n, 4), name, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64, **opts)
    per_step = 2 if name == "edm" else 1
    assert info.nfe == per_step * opts["steps"]
    assert_matches_mixture(x, gm4, torch.Generator().manual_seed(7), sw_factor=2.0, label=f"{name} {opts}")
    d = dlogp(x, gm4.log_prob, gm4.sample(n, generator=torch.Generator().manual_seed(8)))
    assert abs(d.value) < 0.15 + 4 * d.se, (name, sde_name, d)


@pytest.mark.parametrize("name,opts", [("ddim", dict(eta=0.7)), ("euler_ancestral", {}),
                                       ("edm", dict(S_churn=10.0))])
def test_seeds_batch_invariant(name, opts, gm4):
    sde = VPSDE()
    sf = gm4.score_fn(sde)
    seeds = list(range(40, 56))
    kw = dict(opts, steps=10, dtype=torch.float64)
    batch, _ = sample(sde, sf, (16, 4), name, seeds=seeds, **kw)
    for i in (0, 9):
        alone, _ = sample(sde, sf, (1, 4), name, seeds=[seeds[i]], **kw)
        torch.testing.assert_close(alone[0], batch[i], rtol=1e-10, atol=1e-10)
    other, _ = sample(sde, sf, (16, 4), name, seeds=[s + 1 for s in seeds], **kw)
    assert not torch.allclose(other, batch)


def test_edm_churn_noise_and_default_grid(gm4):
    """S_churn > 0 draws one noise per churned step; S_churn = 0 draws none; the default grid is
    Karras' rho=7 grid, recorded in info.options."""
    sde = VESDE()
    sf = gm4.score_fn(sde)
    _, info = sample(sde, sf, (8, 4), "edm", steps=6, generator=torch.Generator().manual_seed(0))
    assert info.options["schedule"] == "karras" and info.options["rho"] == 7.0 and info.nfe == 12
    x_T = sde.prior_sampling((8, 4), generator=torch.Generator().manual_seed(0))
    c1, _ = sample(sde, sf, None, "edm", x_T=x_T, steps=6, generator=torch.Generator().manual_seed(1))
    c2, _ = sample(sde, sf, None, "edm", x_T=x_T, steps=6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(c1, c2)                       # deterministic without churn
    d1, _ = sample(sde, sf, None, "edm", x_T=x_T, steps=6, S_churn=5.0, generator=torch.Generator().manual_seed(1))
    d2, _ = sample(sde, sf, None, "edm", x_T=x_T, steps=6, S_churn=5.0, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(d1, d2)
