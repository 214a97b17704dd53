"""sde_lib against closed forms, the marginal ODEs, Monte-Carlo simulation and torch.distributions."""
import math

import ml_collections
import pytest
import torch
from scipy import integrate

from sde_lib import VESDE, VPSDE, get_sde, subVPSDE

F64 = torch.float64

SDES = {
    "vp": lambda: VPSDE(beta_min=0.1, beta_max=20.0, N=1000),
    "vp_cosine": lambda: VPSDE(beta_max=20.0, N=1000, schedule="cosine"),
    "subvp": lambda: subVPSDE(beta_min=0.1, beta_max=20.0, N=1000),
    "ve": lambda: VESDE(sigma_min=0.01, sigma_max=50.0, N=1000),
}


def tgrid(n=9, lo=0.0, hi=1.0):
    return torch.linspace(lo, hi, n, dtype=F64)


# ---------------------------------------------------------------- closed forms ------
def test_vp_linear_closed_form():
    sde = SDES["vp"]()
    t = tgrid()
    m, s = sde.marginal_coeffs(t)
    lmc = -0.25 * t ** 2 * (20.0 - 0.1) - 0.5 * t * 0.1
    torch.testing.assert_close(m, torch.exp(lmc), rtol=1e-12, atol=0)
    torch.testing.assert_close(s, torch.sqrt(1 - torch.exp(2 * lmc)), rtol=1e-10, atol=1e-12)
    x = torch.randn(9, 3, dtype=F64)
    drift, g = sde.sde(x, t)
    beta = 0.1 + t * (20.0 - 0.1)
    torch.testing.assert_close(drift, -0.5 * beta[:, None] * x)
    torch.testing.assert_close(g, torch.sqrt(beta))


def test_subvp_closed_form():
    sde = SDES["subvp"]()
    t = tgrid()
    m, s = sde.marginal_coeffs(t)
    lmc = -0.25 * t ** 2 * (20.0 - 0.1) - 0.5 * t * 0.1
    torch.testing.assert_close(m, torch.exp(lmc), rtol=1e-12, atol=0)
    torch.testing.assert_close(s, 1 - torch.exp(2 * lmc), rtol=1e-10, atol=1e-12)
    beta = 0.1 + t * (20.0 - 0.1)
    integral = 0.1 * t + 0.5 * t ** 2 * (20.0 - 0.1)
    _, g = sde.sde(torch.zeros(9, 2, dtype=F64), t)
    torch.testing.assert_close(g, torch.sqrt(beta * (1 - torch.exp(-2 * integral))))
    # sub-VP variance is below VP variance for t > 0
    assert (s[1:] ** 2 < SDES["vp"]().marginal_coeffs(t)[1][1:] ** 2).all()


def test_ve_closed_form():
    sde = SDES["ve"]()
    t = tgrid()
    m, s = sde.marginal_coeffs(t)
    sigma = 0.01 * (50.0 / 0.01) ** t
    torch.testing.assert_close(m, torch.ones_like(t))
    torch.testing.assert_close(s, sigma)
    drift, g = sde.sde(torch.ones(9, 2, dtype=F64), t)
    assert torch.equal(drift, torch.zeros_like(drift))
    torch.testing.assert_close(g, sigma * math.sqrt(2 * math.log(50.0 / 0.01)))


def test_cosine_matches_alpha_bar_before_cap_and_quadrature_after():
    sde = SDES["vp_cosine"]()
    sched = sde.schedule
    s = 0.008
    t = tgrid(41)
    m, _ = sde.marginal_coeffs(t)
    phi = lambda u: (u + s) / (1 + s) * math.pi / 2
    alpha_bar = torch.cos(phi(t)) ** 2 / math.cos(phi(0.0)) ** 2
    before = t <= sched.t_star
    torch.testing.assert_close(m[before] ** 2, alpha_bar[before], rtol=1e-10, atol=1e-14)
    # Everywhere (also past the cap): m(t) = exp(-1/2 int_0^t beta), by quadrature of beta(t).
    beta = lambda u: sde.beta(torch.tensor([u], dtype=F64)).item()
    for ti in [0.3, 0.85, sched.t_star, 0.95, 1.0]:
        B, _ = integrate.quad(beta, 0.0, ti, points=[sched.t_star] if ti > sched.t_star else None,
                              epsabs=1e-12, epsrel=1e-12)
        m_i, _ = sde.marginal_coeffs(torch.tensor([ti], dtype=F64))
        assert abs(m_i.item() - math.exp(-0.5 * B)) < 1e-9 * max(1.0, math.exp(-0.5 * B))
    # finite and capped near T
    bt = sde.beta(tgrid(101))
    assert torch.isfinite(bt).all() and bt.max().item() <= 20.0 + 1e-12
    assert 0.0 < sde.marginal_coeffs(torch.ones(1, dtype=F64))[0].item() < 0.1


@pytest.mark.parametrize("name", list(SDES))
def test_marginals_solve_the_moment_odes(name):
    """For dx = a x dt + g dw: dm/dt = a m and d(s^2)/dt = 2 a s^2 + g^2 (VE: s^2 = sigma^2 incl. sigma_min^2)."""
    sde = SDES[name]()
    t = torch.linspace(0.02, 0.98, 25, dtype=F64).requires_grad_(True)
    m, s = sde.marginal_coeffs(t)
    dm = (torch.autograd.grad(m.sum(), t, retain_graph=True)[0] if m.requires_grad
          else torch.zeros_like(t))  # VE: m = 1
    ds2 = torch.autograd.grad((s ** 2).sum(), t)[0]
    with torch.no_grad():
        a, g = sde.drift_coeff(t), sde.diffusion_coeff(t)
        torch.testing.assert_close(dm, a * m, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(ds2, 2 * a * s ** 2 + g ** 2, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(SDES))
def test_marginal_prob_matches_monte_carlo_simulation(name):
    """Simulate the forward SDE from x(0) ~ N(m(0) x0, s(0)^2 I) and compare the empirical mean/std
    at t with marginal_prob, within a few standard errors. The integrator is stochastic Heun (weak
    order 2 for additive noise), so 300 steps leave a bias far below the Monte-Carlo error."""
    sde = SDES[name]()
    g = torch.Generator().manual_seed(1)
    n, D, t_end, steps = 20000, 3, 0.6, 300
    x0 = torch.tensor([1.5, -0.5, 0.0], dtype=F64)
    m0, s0 = sde.marginal_coeffs(torch.zeros(1, dtype=F64))
    x = m0 * x0 + s0 * torch.randn(n, D, generator=g, dtype=F64)
    dt = t_end / steps
    t = torch.zeros(n, dtype=F64)
    for i in range(steps):
        t_next = torch.full((n,), (i + 1) * dt, dtype=F64)
        dw = math.sqrt(dt) * torch.randn(n, D, generator=g, dtype=F64)
        f0, g0 = sde.sde(x, t)
        x_pred = x + f0 * dt + g0[:, None] * dw
        f1, g1 = sde.sde(x_pred, t_next)
        x = x + 0.5 * (f0 + f1) * dt + 0.5 * (g0 + g1)[:, None] * dw
        t = t_next
    mean, std = sde.marginal_prob(x0.expand(1, D), torch.tensor([t_end], dtype=F64))
    emp_mean, emp_std = x.mean(0), x.std(0)
    se_mean = std / math.sqrt(n)
    se_std = std / math.sqrt(2 * n)
    assert ((emp_mean - mean[0]).abs() < 4 * se_mean).all(), (emp_mean, mean)
    assert ((emp_std - std).abs() < 4 * se_std + 2e-3 * std).all(), (emp_std, std)
    # the same tolerance rejects a std that is 3% off: the check can fail
    assert ((emp_std - 1.03 * std).abs() > 4 * se_std + 2e-3 * std).all()


# ---------------------------------------------------------------- prior --------------
@pytest.mark.parametrize("name", list(SDES))
def test_prior_logp_matches_torch_distributions(name, gen):
    sde = SDES[name]()
    z = sde.prior_sampling((64, 2, 3, 3), generator=gen, dtype=F64)
    assert z.shape == (64, 2, 3, 3) and z.dtype == F64
    sigma = sde.prior_std()
    ref = torch.distributions.Normal(torch.zeros((), dtype=F64), sigma).log_prob(z).reshape(64, -1).sum(1)
    torch.testing.assert_close(sde.prior_logp(z), ref)
    # the draw really has the prior's scale
    assert abs(z.std().item() / sigma - 1) < 0.1


# ---------------------------------------------------------------- discretisation ----------
@pytest.mark.parametrize("name", list(SDES))
def test_discretize_approaches_sde_as_N_grows(name):
    base = SDES[name]()
    t = torch.linspace(0.1, 0.9, 9, dtype=F64)
    x = torch.randn(9, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    drift, g = base.sde(x, t)
    errs = []
    for N in [100, 1000, 10000]:
        dt = 1.0 / N
        f, G = base.discretize(x, t, dt=dt)
        err = ((f / dt - drift).abs().max() / drift.abs().max().clamp(min=1e-12)).item() if name != "ve" else 0.0
        err = max(err, ((G ** 2 / dt - g ** 2).abs() / g ** 2).max().item())
        errs.append(err)
    assert errs[-1] < 0.02, errs
    if name == "subvp":  # sub-VP's chain is the Euler chain itself
        assert max(errs) < 1e-12, errs
    else:
        assert errs[0] > errs[1] > errs[2], errs


def test_vp_ddpm_chain_reproduces_marginal_mean():
    """The DDPM chain's product of sqrt(1 - beta_i) over a grid equals m(t) exactly, for any schedule."""
    for sde in [SDES["vp"](), SDES["vp_cosine"]()]:
        N = 50
        grid = torch.arange(1, N + 1, dtype=F64) / N
        betas = sde.discrete_beta(grid, dt=1.0 / N)
        assert ((betas > 0) & (betas < 1)).all()
        prod = torch.cumprod(torch.sqrt(1 - betas), 0)
        torch.testing.assert_close(prod, sde.marginal_coeffs(grid)[0], rtol=1e-10, atol=1e-14)
    # default dt = T / N, and beta_i ~ beta(t) / N
    sde = VPSDE(N=1000)
    t = torch.tensor([0.5], dtype=F64)
    assert abs(sde.discrete_beta(t).item() / (sde.beta(t).item() / 1000) - 1) < 0.01


def test_ve_smld_chain():
    sde = VESDE(sigma_min=0.01, sigma_max=50.0, N=10)
    t = torch.tensor([1.0, 0.55, 0.05], dtype=F64)
    x = torch.zeros(3, 2, dtype=F64)
    f, G = sde.discretize(x, t)
    assert torch.equal(f, torch.zeros_like(x))
    s = sde.sigma(t)
    prev = sde.sigma(t - 0.1)
    prev[2] = 0.0  # below the first level
    torch.testing.assert_close(G, torch.sqrt(s ** 2 - prev ** 2))


# ---------------------------------------------------------------- reverse -------------
@pytest.mark.parametrize("name", list(SDES))
def test_reverse_sde_and_probability_flow(name):
    sde = SDES[name]()
    score_fn = lambda x, t: -x * (1 + t[:, None, None, None])
    x = torch.randn(5, 1, 2, 2, dtype=F64)
    t = torch.linspace(0.1, 0.9, 5, dtype=F64)
    drift, g = sde.sde(x, t)
    score = score_fn(x, t)
    r_drift, r_g = sde.reverse(score_fn).sde(x, t)
    torch.testing.assert_close(r_drift, drift - g[:, None, None, None] ** 2 * score)
    torch.testing.assert_close(r_g, g)
    p_drift, p_g = sde.reverse(score_fn, probability_flow=True).sde(x, t)
    torch.testing.assert_close(p_drift, drift - 0.5 * g[:, None, None, None] ** 2 * score)
    assert torch.equal(p_g, torch.zeros_like(p_g))
    f, G = sde.discretize(x, t, dt=0.01)
    rf, rG = sde.reverse(score_fn).discretize(x, t, dt=0.01)
    torch.testing.assert_close(rf, f - G[:, None, None, None] ** 2 * score)
    torch.testing.assert_close(rG, G)


# ---------------------------------------------------------------- shapes, dtypes ----------
@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_image_shapes_kept(name, dtype):
    sde = SDES[name]()
    x = torch.randn(4, 3, 8, 8, dtype=dtype)
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=dtype)
    for out in [*sde.sde(x, t), *sde.marginal_prob(x, t), *sde.discretize(x, t)]:
        assert out.dtype == dtype and torch.isfinite(out).all()
    mean, std = sde.marginal_prob(x, t)
    assert mean.shape == x.shape and std.shape == (4,)
    assert sde.prior_logp(x).shape == (4,)


# ---------------------------------------------------------------- errors ---------------------
@pytest.mark.parametrize("ctor, match", [
    (lambda: VPSDE(beta_min=20.0, beta_max=0.1), "beta_min"),
    (lambda: VPSDE(beta_min=-1.0), "beta_min"),
    (lambda: VPSDE(N=0), "N"),
    (lambda: VPSDE(N=10.5), "N"),
    (lambda: VPSDE(schedule="quadratic"), "quadratic"),
    (lambda: subVPSDE(beta_min=5.0, beta_max=5.0), "beta_min"),
    (lambda: VESDE(sigma_min=0.0), "sigma_min"),
    (lambda: VESDE(sigma_min=10.0, sigma_max=1.0), "sigma_min"),
    (lambda: VESDE(sigma_max=float("nan")), "sigma_max"),
    (lambda: VPSDE(eps=1.5), "eps"),
])
def test_bad_construction_raises(ctor, match):
    with pytest.raises(ValueError, match=match):
        ctor()


def test_time_outside_range_raises():
    sde = VPSDE()
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\[0, 1.0\].*1.5"):
        sde.marginal_prob(x, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="t must"):
        sde.sde(x, torch.tensor([-0.1, 0.5]))
    with pytest.raises(ValueError, match="t must"):
        sde.sde(x, torch.tensor([float("nan"), 0.5]))
    with pytest.raises(ValueError, match="shape"):
        sde.sde(x, torch.tensor(0.5))
    with pytest.raises(ValueError, match="batch size"):
        sde.sde(x, torch.tensor([0.5, 0.5, 0.5]))


def test_get_sde_from_config():
    cfg = ml_collections.ConfigDict({"sde": {"name": "vpsde", "beta_min": 0.1, "beta_max": 20.0, "N": 500,
                                             "schedule": "cosine"}})
    sde = get_sde(cfg)
    assert isinstance(sde, VPSDE) and sde.N == 500 and sde.schedule_name == "cosine"
    assert isinstance(get_sde(ml_collections.ConfigDict({"name": "subvpsde"})), subVPSDE)
    ve = get_sde(ml_collections.ConfigDict({"sde": {"name": "vesde", "sigma_min": 0.02, "sigma_max": 10.0}}))
    assert isinstance(ve, VESDE) and ve.sigma_max == 10.0 and ve.eps == 1e-5
    with pytest.raises(ValueError, match="'bogus'.*vpsde"):
        get_sde(ml_collections.ConfigDict({"sde": {"name": "bogus"}}))
