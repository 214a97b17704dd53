"""The exact Gaussian-mixture score oracle against autograd, quadrature, scipy and sampling statistics."""

import numpy as np
import pytest
import torch
from scipy import stats

from models.analytic import GaussianMixture, make_mixture
from sde_lib import VESDE, VPSDE, subVPSDE

F64 = torch.float64

SDES = {
    "vp": lambda: VPSDE(),
    "vp_cosine": lambda: VPSDE(schedule="cosine"),
    "subvp": lambda: subVPSDE(),
    "ve": lambda: VESDE(sigma_min=0.01, sigma_max=50.0),
}


def random_gm(D=3, K=3, seed=0, **kw):
    return make_mixture("random", D=D, K=K, generator=torch.Generator().manual_seed(seed), **kw)


def scipy_logpdf(gm, x):
    """Independent reference: log sum_k w_k N(x; mu_k, Sigma_k) with scipy."""
    covs = gm.covs.numpy()
    dens = [np.log(w) + stats.multivariate_normal(mu, c).logpdf(x)
            for w, mu, c in zip(gm.weights.numpy(), gm.means.numpy(), covs)]
    return np.logaddexp.reduce(np.stack(dens, 0), axis=0)


def test_log_prob_matches_scipy():
    gm = random_gm(D=4, K=3)
    x = gm.sample(50, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(gm.log_prob(x).numpy(), scipy_logpdf(gm, x.numpy()), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", list(SDES))
def test_marginal_is_the_pushed_mixture(name):
    """marginal(sde, t) has means m mu_k and covs m^2 Sigma_k + s^2 I; log_prob_t agrees with it per sample."""
    sde = SDES[name]()
    gm = random_gm()
    t = 0.37
    mt = gm.marginal(sde, t)
    m, s = (v.item() for v in sde.marginal_coeffs(torch.tensor([t], dtype=F64)))
    torch.testing.assert_close(mt.means, m * gm.means)
    torch.testing.assert_close(mt.covs, m ** 2 * gm.covs + s ** 2 * torch.eye(3, dtype=F64))
    x = torch.randn(20, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(mt.log_prob(x).numpy(), scipy_logpdf(mt, x.numpy()), rtol=1e-10)
    torch.testing.assert_close(gm.log_prob_t(sde, x, torch.full((20,), t, dtype=F64)), mt.log_prob(x))


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("kind", ["full", "diagonal"])
def test_score_equals_autograd_of_log_prob(name, kind):
    sde = SDES[name]()
    gm = random_gm(D=3, K=4, seed=5)
    if kind == "diagonal":
        gm = GaussianMixture(gm.weights, gm.means, torch.diagonal(gm.covs, dim1=1, dim2=2))
    g = torch.Generator().manual_seed(3)
    x = 3 * torch.randn(32, 3, dtype=F64, generator=g)
    t = torch.rand(32, dtype=F64, generator=g) * (sde.T - sde.eps) + sde.eps  # a different t per sample
    x.requires_grad_(True)
    ref = torch.autograd.grad(gm.log_prob_t(sde, x, t).sum(), x)[0]
    torch.testing.assert_close(gm.score_fn(sde)(x.detach(), t), ref, rtol=1e-9, atol=1e-10)
    # and each sample's score is the one of the marginal at its own time
    i = 7
    xi = x.detach()[i:i + 1].clone().requires_grad_(True)
    ref_i = torch.autograd.grad(gm.marginal(sde, t[i].item()).log_prob(xi).sum(), xi)[0]
    torch.testing.assert_close(ref[i:i + 1], ref_i, rtol=1e-9, atol=1e-10)


def test_score_of_a_single_gaussian_is_linear():
    """Closed form: for N(mu, c^2 I) under VP, score_t(x) = -(x - m mu) / (m^2 c^2 + s^2)."""
    sde = VPSDE()
    mu = torch.tensor([[1.0, -2.0]], dtype=F64)
    gm = GaussianMixture([1.0], mu, torch.full((1, 2), 0.25, dtype=F64))
    x = torch.randn(10, 2, dtype=F64)
    t = torch.linspace(0.01, 1.0, 10, dtype=F64)
    m, s = sde.marginal_coeffs(t)
    expected = -(x - m[:, None] * mu) / (m[:, None] ** 2 * 0.25 + s[:, None] ** 2)
    torch.testing.assert_close(gm.score_fn(sde)(x, t), expected)


def test_log_prob_integrates_to_one_1d():
    gm = GaussianMixture([0.2, 0.5, 0.3], [[-2.0], [0.0], [3.0]], [[0.1], [1.0], [0.5]])
    x = torch.linspace(-12, 14, 20001, dtype=F64)[:, None]
    total = torch.trapezoid(gm.log_prob(x).exp(), x[:, 0]).item()
    assert abs(total - 1) < 1e-8
    # marginal at t too (VE widens it)
    sde = VESDE(sigma_min=0.01, sigma_max=2.0)
    xt = torch.linspace(-20, 20, 20001, dtype=F64)[:, None]
    total_t = torch.trapezoid(gm.marginal(sde, 0.8).log_prob(xt).exp(), xt[:, 0]).item()
    assert abs(total_t - 1) < 1e-8


def test_log_prob_integrates_to_one_2d():
    gm = random_gm(D=2, K=3, seed=4, scale=1.5, std=0.6)
    lin = torch.linspace(-9, 9, 601, dtype=F64)
    X, Y = torch.meshgrid(lin, lin, indexing="ij")
    p = gm.log_prob(torch.stack([X.reshape(-1), Y.reshape(-1)], 1)).exp().reshape(601, 601)
    total = torch.trapezoid(torch.trapezoid(p, lin, dim=1), lin).item()
    assert abs(total - 1) < 1e-5


def test_samples_match_weights_and_moments():
    gm = random_gm(D=3, K=3, seed=6)
    n = 40000
    x, labels = gm.sample(n, generator=torch.Generator().manual_seed(7), return_labels=True)
    assert x.shape == (n, 3) and x.dtype == F64
    freq = torch.bincount(labels, minlength=3).to(F64) / n
    se = torch.sqrt(gm.weights * (1 - gm.weights) / n)
    assert ((freq - gm.weights).abs() < 4 * se).all(), (freq, gm.weights)
    # mixture mean and covariance in closed form
    w = gm.weights
    mean = (w[:, None] * gm.means).sum(0)
    centred = gm.means - mean
    cov = (w[:, None, None] * (gm.covs + centred[:, :, None] * centred[:, None, :])).sum(0)
    emp_mean = x.mean(0)
    se_mean = torch.sqrt(torch.diagonal(cov) / n)
    assert ((emp_mean - mean).abs() < 4 * se_mean).all()
    emp_cov = torch.cov(x.T)
    assert (emp_cov - cov).abs().max() < 0.05 * cov.abs().max()
    # per-component covariance (checks the eigendecomposition sampling path)
    k = 0
    xk = x[labels == k]
    C = gm.covs[k]
    se_cov = torch.sqrt((torch.diagonal(C)[:, None] * torch.diagonal(C)[None, :] + C ** 2) / len(xk))
    assert ((torch.cov(xk.T) - C).abs() < 5 * se_cov).all()


def test_sampling_is_reproducible():
    gm = random_gm()
    a = gm.sample(10, generator=torch.Generator().manual_seed(1))
    b = gm.sample(10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_diagonal_and_full_agree():
    sde = VPSDE()
    g = torch.Generator().manual_seed(8)
    var = 0.1 + torch.rand(3, 4, generator=g, dtype=F64)
    means = torch.randn(3, 4, generator=g, dtype=F64)
    diag = GaussianMixture([1.0, 2.0, 3.0], means, var)
    full = GaussianMixture([1.0, 2.0, 3.0], means, torch.diag_embed(var))
    x = torch.randn(16, 4, generator=g, dtype=F64)
    t = torch.rand(16, generator=g, dtype=F64)
    torch.testing.assert_close(diag.log_prob(x), full.log_prob(x))
    torch.testing.assert_close(diag.score_fn(sde)(x, t), full.score_fn(sde)(x, t))


def test_image_shaped_input_flattens_row_major():
    sde = VESDE()
    gm = random_gm(D=12, K=2, seed=9)
    x = torch.randn(5, 3, 2, 2, dtype=F64)
    t = torch.full((5,), 0.1, dtype=F64)
    s_img = gm.score_fn(sde)(x, t)
    assert s_img.shape == x.shape
    torch.testing.assert_close(s_img.reshape(5, -1), gm.score_fn(sde)(x.reshape(5, -1), t))


def test_float32_is_stable_far_from_the_modes():
    """log-sum-exp: points 1000 stds away give finite, correct scores in float32."""
    gm = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[0.01], [0.01]], dtype=torch.float32)
    x = torch.tensor([[-100.0], [100.0], [0.0]], dtype=torch.float32)
    sde = VPSDE()
    t = torch.full((3,), 1e-3)
    score = gm.score_fn(sde)(x, t)
    assert torch.isfinite(score).all() and torch.isfinite(gm.log_prob(x)).all()
    # far left: dominated by the left component, score ~ -(x - m mu)/var
    m, s = sde.marginal_coeffs(t)
    var = m[0] ** 2 * 0.01 + s[0] ** 2
    assert abs(score[0, 0].item() - (-(-100.0 - m[0].item() * -1.0) / var.item())) < 1e-3 * abs(score[0, 0].item())
    assert abs(score[2, 0].item()) < 1e-3  # symmetric point


def test_point_masses_are_allowed_after_t0():
    """covs = 0 (discrete data) has a density only for s(t) > 0."""
    gm = GaussianMixture([1.0, 1.0], [[-1.0, 0.0], [1.0, 0.0]], torch.zeros(2, 2))
    sde = VPSDE()
    x = torch.zeros(3, 2, dtype=F64)
    out = gm.score_fn(sde)(x, torch.full((3,), 0.5, dtype=F64))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="singular"):
        gm.log_prob(x)
    with pytest.raises(ValueError, match="singular"):
        gm.score_fn(sde)(x, torch.zeros(3, dtype=F64))
    # VE keeps s(0) = sigma_min > 0
    assert torch.isfinite(gm.score_fn(VESDE())(x, torch.zeros(3, dtype=F64))).all()


@pytest.mark.parametrize("args, match", [
    (([1.0, 1.0], [[0.0, 0.0]], [[1.0, 1.0]]), "weights"),
    (([1.0], [0.0, 0.0], [[1.0, 1.0]]), "means"),
    (([1.0], [[0.0, 0.0]], [[1.0, 1.0, 1.0]]), "covs"),
    (([-1.0], [[0.0, 0.0]], [[1.0, 1.0]]), "weights"),
    (([1.0], [[0.0, 0.0]], [[-1.0, 1.0]]), "covs"),
    (([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.0, 1.0]]]), "symmetric"),
    (([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]]), "semi-definite"),
    (([1.0], [[float("nan"), 0.0]], [[1.0, 1.0]]), "means"),
])
def test_bad_mixture_raises(args, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(*args)


def test_bad_query_raises():
    gm = random_gm(D=3)
    sde = VPSDE()
    with pytest.raises(ValueError, match="D = 3"):
        gm.log_prob(torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"shape \[B\] = \[4\]"):
        gm.score_fn(sde)(torch.zeros(4, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="t must"):
        gm.score_fn(sde)(torch.zeros(2, 3), torch.tensor([0.5, 2.0]))
    with pytest.raises(ValueError, match="n must"):
        gm.sample(0)
    with pytest.raises(ValueError, match="unknown mixture kind"):
        make_mixture("spiral")
