"""solvers.metrics against closed forms."""
import math

import pytest
import torch

from models.analytic import GaussianMixture, make_mixture
from sde_lib import VESDE, VPSDE
from solvers.metrics import (component_tv, convergence_order, dlogp, mixture_metrics, moment_errors, pathwise_rms,
                             reference_flow)

from test_registry import exact_flow


def std_normal_logp(x):
    return -0.5 * (x ** 2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)


def test_dlogp_sign_size_and_standard_error():
    """N(0, I_D): log p of a true sample has variance D/2, so SE = sqrt(D/n) for two sets of n.
    Samples from N(0, c^2 I) have E log p = -D/2 (c^2 - 1) relative to true samples."""
    D, n = 8, 4000
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(n, D, generator=g, dtype=torch.float64)
    for c in (1.0, 1.2, 0.8):
        x = c * torch.randn(n, D, generator=g, dtype=torch.float64)
        d = dlogp(x, std_normal_logp, ref)
        want = -0.5 * D * (c ** 2 - 1)
        se_true = math.sqrt((D / 2 * c ** 4 + D / 2) / n)
        assert abs(d.se - se_true) < 0.1 * se_true, (d, se_true)
        assert abs(d.value - want) < 4 * d.se, (c, d, want)
    assert dlogp(1.2 * ref, std_normal_logp, ref).value < 0 < dlogp(0.8 * ref, std_normal_logp, ref).value


def test_component_tv_and_moments():
    gm = make_mixture("random", D=3, K=3, scale=3.0, std=0.3, generator=torch.Generator().manual_seed(1))
    n = 20000
    x, labels = gm.sample(n, generator=torch.Generator().manual_seed(2), return_labels=True)
    assert component_tv(x, gm) < 3 * math.sqrt(gm.K / n)
    # keep only components 0 and 1: TV = 1/2 sum |w' - w| with w' the renormalised weights
    keep = x[labels != 2]
    w = gm.weights.double()
    w2 = torch.tensor([w[0], w[1], 0.0], dtype=torch.float64) / (w[0] + w[1])
    assert abs(component_tv(keep, gm) - 0.5 * (w2 - w).abs().sum().item()) < 0.02
    e = moment_errors(x, gm)
    assert e["mean_err"] < 0.05 and e["cov_err"] < 0.05
    cov = torch.cov(x.T.double())
    scale = math.sqrt(cov.diagonal().mean().item())
    shifted = moment_errors(x + torch.tensor([0.5 * scale, 0.0, 0.0], dtype=torch.float64), gm)
    assert abs(shifted["mean_err"] - 0.5) < 0.06
    r = mixture_metrics(x[:2000], gm, generator=torch.Generator().manual_seed(3))
    assert set(r) >= {"dlogp", "dlogp_se", "sw1", "tv", "mean_err", "cov_err", "finite"}
    bad = x[:100].clone()
    bad[3, 0] = float("nan")
    assert mixture_metrics(bad, gm)["finite"] == pytest.approx(0.99)


def test_reference_flow_matches_the_closed_form():
    lam = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64)
    mu = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64)
    gm = GaussianMixture(torch.ones(1), mu[None], lam[None])
    for sde in (VPSDE(), VESDE()):
        x_T = sde.prior_sampling((16, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ref = reference_flow(sde, gm.score_fn(sde), x_T)
        assert pathwise_rms(ref, exact_flow(sde, x_T, sde.eps, mu, lam)) < 1e-7


def test_convergence_order():
    steps = [10, 20, 40, 80]
    assert convergence_order(steps, [3.0 * n ** -2 for n in steps]) == pytest.approx(2.0)
    assert convergence_order(steps, [0.1 * n ** -1.0 * (1 + 0.01 * (-1) ** i) for i, n in enumerate(steps)]) \
        == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="distinct"):
        convergence_order([10, 10], [1.0, 0.5])
    with pytest.raises(ValueError, match="finite"):
        convergence_order([10, 20], [1.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        pathwise_rms(torch.zeros(2, 3), torch.zeros(3, 2))
