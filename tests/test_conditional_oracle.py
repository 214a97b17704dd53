"""The exact conditional oracle (components, noisy classifier, conditioning on observed
coordinates) against independent formulas: scipy densities and Bayes' rule by quadrature."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from models.analytic import GaussianMixture, make_mixture
from sde_lib import VESDE, VPSDE, subVPSDE

F64 = torch.float64
SDES = {"vp": VPSDE, "subvp": subVPSDE, "ve": lambda: VESDE(sigma_min=0.01, sigma_max=50.0)}


def random_gm(D=4, K=3, seed=0, **kw):
    return make_mixture("random", D=D, K=K, generator=torch.Generator().manual_seed(seed), **kw)


def scipy_mixture_logpdf(weights, means, covs, x):
    terms = [np.log(w) + stats.multivariate_normal(mu, c).logpdf(x) for w, mu, c in zip(weights, means, covs)]
    return np.logaddexp.reduce(np.stack(terms, 0), axis=0)


def test_component_is_the_kth_gaussian():
    gm = random_gm()
    x = gm.sample(20, generator=torch.Generator().manual_seed(1))
    for k in range(gm.K):
        ck = gm.component(k)
        assert ck.K == 1 and ck.D == gm.D
        ref = stats.multivariate_normal(gm.means[k].numpy(), gm.covs[k].numpy()).logpdf(x.numpy())
        np.testing.assert_allclose(ck.log_prob(x).numpy(), ref, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match=r"k must be an int in \[0, K\) = \[0, 3\), got 3"):
        gm.component(3)
    with pytest.raises(ValueError, match="got -1"):
        gm.component(-1)


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("diagonal", [False, True])
def test_classifier_matches_scipy_bayes(name, diagonal):
    """log p_t(k | x) = log w_k N(x; m mu_k, m^2 S_k + s^2 I) - log sum_j (...), each term from scipy."""
    sde = SDES[name]()
    gm = random_gm(D=3, K=4, seed=2)
    if diagonal:
        gm = GaussianMixture(gm.weights, gm.means, torch.diagonal(gm.covs, dim1=1, dim2=2))
    B = 12
    g = torch.Generator().manual_seed(3)
    t = 0.05 + 0.9 * torch.rand(B, generator=g, dtype=F64)
    x = 2.5 * torch.randn(B, 3, generator=g, dtype=F64)
    got = gm.classifier_fn(sde)(x, t)
    m, s = sde.marginal_coeffs(t)
    for b in range(B):
        mb, sb = m[b].item(), s[b].item()
        joint = np.array([np.log(w) + stats.multivariate_normal(mb * mu, mb ** 2 * c + sb ** 2 * np.eye(3)).logpdf(x[b])
                          for w, mu, c in zip(gm.weights.numpy(), gm.means.numpy(), gm.covs.numpy())])
        np.testing.assert_allclose(got[b].numpy(), joint - np.logaddexp.reduce(joint), rtol=1e-9, atol=1e-9)


def test_classifier_by_quadrature_over_x0_2d():
    """Bayes by brute force in 2-D: p_t(k | x) = int w_k N(x0; mu_k, S_k) N(x; m x0, s^2 I) dx0 / p_t(x),
    integrated on a grid over x0 (no closed-form convolution used)."""
    sde = VPSDE()
    gm = random_gm(D=2, K=3, seed=5, scale=1.5, std=0.6)
    h = 0.02
    grid = torch.arange(-6, 6, h, dtype=F64)
    X0 = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    comp = torch.stack([torch.exp(gm.component(k).log_prob(X0)) * gm.weights[k] for k in range(gm.K)], 1)
    fn = gm.classifier_fn(sde)
    for t_val, x in [(0.2, [0.3, -0.4]), (0.5, [1.0, 1.0]), (0.8, [-0.5, 0.2])]:
        t = torch.tensor([t_val], dtype=F64)
        m, s = (v.item() for v in sde.marginal_coeffs(t))
        kern = torch.exp(-((torch.tensor(x, dtype=F64) - m * X0) ** 2).sum(1) / (2 * s ** 2)) / (2 * math.pi * s ** 2)
        joint = (comp * kern[:, None]).sum(0) * h * h
        ref = (joint / joint.sum()).log()
        got = fn(torch.tensor([x], dtype=F64), t)[0]
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-6)


@pytest.mark.parametrize("name", list(SDES))
def test_classifier_gradient_is_component_minus_mixture_score(name):
    sde = SDES[name]()
    gm = random_gm(D=4, K=3, seed=1)
    g = torch.Generator().manual_seed(4)
    x = 2 * torch.randn(8, 4, generator=g, dtype=F64)
    t = 0.05 + 0.9 * torch.rand(8, generator=g, dtype=F64)
    for k in range(gm.K):
        xr = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(gm.classifier_fn(sde)(xr, t)[:, k].sum(), xr)
        expected = gm.component(k).score_t(sde, x, t) - gm.score_t(sde, x, t)
        torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("diagonal", [False, True])
def test_condition_matches_joint_over_marginal_scipy(diagonal):
    """log p(x_u | x_o = v) = log p(v, x_u) - log p_o(v), both from scipy on the full / sub-block covariances."""
    gm = random_gm(D=5, K=3, seed=6, scale=1.0, std=0.8)
    if diagonal:
        gm = GaussianMixture(gm.weights, gm.means, torch.diagonal(gm.covs, dim1=1, dim2=2))
    mask = torch.tensor([True, False, True, False, False])
    v = torch.tensor([0.4, 0.0, -0.7, 0.0, 0.0], dtype=F64)
    cond = gm.condition(mask, v)
    assert cond.D == 3 and cond.K == 3 and cond.diagonal == diagonal
    # the same with only the observed values
    torch.testing.assert_close(gm.condition(mask, v[mask]).means, cond.means)
    xu = cond.sample(30, generator=torch.Generator().manual_seed(2))
    full = torch.zeros(30, 5, dtype=F64)
    full[:, mask], full[:, ~mask] = v[mask], xu
    W, M, C = gm.weights.numpy(), gm.means.numpy(), gm.covs.numpy()
    o = mask.numpy()
    ref = scipy_mixture_logpdf(W, M, C, full.numpy()) - \
        scipy_mixture_logpdf(W, M[:, o], C[:, o][:, :, o], v[mask].numpy()[None])
    np.testing.assert_allclose(cond.log_prob(xu).numpy(), ref, rtol=1e-9, atol=1e-9)


def test_condition_by_quadrature_2d():
    """Observe x_0 = v in 2-D: the conditional density, mean and variance of x_1 by quadrature of p(v, x_1)."""
    gm = random_gm(D=2, K=3, seed=8, scale=1.5, std=0.7)
    v = 0.3
    h = 1e-3
    x1 = torch.arange(-10, 10, h, dtype=F64)
    pts = torch.stack([torch.full_like(x1, v), x1], 1)
    joint = torch.exp(gm.log_prob(pts))
    dens = joint / (joint.sum() * h)
    cond = gm.condition(torch.tensor([True, False]), torch.tensor([v]))
    np.testing.assert_allclose(torch.exp(cond.log_prob(x1[::500, None])).numpy(), dens[::500].numpy(),
                               rtol=1e-6, atol=1e-9)
    mean_q = (x1 * dens).sum() * h
    var_q = ((x1 - mean_q) ** 2 * dens).sum() * h
    mean_c = (cond.weights * cond.means[:, 0]).sum()
    var_c = (cond.weights * (cond.covs[:, 0, 0] + cond.means[:, 0] ** 2)).sum() - mean_c ** 2
    assert abs(mean_q - mean_c) < 1e-6 and abs(var_q - var_c) < 1e-6


def test_condition_weights_follow_the_evidence():
    """Two far-apart components: observing a coordinate near one of them puts all weight there."""
    gm = GaussianMixture([0.5, 0.5], [[-3.0, 0.0], [3.0, 0.0]], [[0.25, 1.0], [0.25, 1.0]])
    cond = gm.condition(torch.tensor([True, False]), torch.tensor([2.9, 0.0]))
    assert cond.weights[1] > 1 - 1e-12
    with pytest.raises(ValueError, match="bool tensor with D = 2 elements"):
        gm.condition(torch.tensor([1, 0]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="bool tensor with D = 2 elements"):
        gm.condition(torch.tensor([True, False, True]), torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError, match="one per observed coordinate \\(1\\), got 3"):
        gm.condition(torch.tensor([True, False]), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="observes every coordinate"):
        gm.condition(torch.tensor([True, True]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="values must be finite"):
        gm.condition(torch.tensor([True, False]), torch.tensor([float("nan")]))
    point = GaussianMixture([1.0], [[0.0, 0.0]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="singular"):
        point.condition(torch.tensor([True, False]), torch.tensor([0.0]))
    # nothing observed: the mixture itself
    same = gm.condition(torch.tensor([False, False]), torch.zeros(2))
    torch.testing.assert_close(same.means, gm.means)
