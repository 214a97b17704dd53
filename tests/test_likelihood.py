"""log_likelihood, bits_per_dim, encode/decode against closed forms."""
import math

import pytest
import torch

from models.analytic import GaussianMixture, make_mixture
from sde_lib import VESDE, VPSDE, subVPSDE
from solvers import CountedScore, bits_per_dim, decode, encode, log_likelihood


@pytest.fixture(scope="module")
def gm3():
    return make_mixture("random", D=3, K=3, scale=1.5, std=0.6, generator=torch.Generator().manual_seed(2))


def _exact(gm, sde, x, t):
    return gm.log_prob_t(sde, x, torch.full((x.shape[0],), t, dtype=x.dtype))


@pytest.mark.parametrize("sde", [VPSDE(), subVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_exact_trace_solver_error_shrinks_with_tolerance(sde, gm3):
    """With the exact log p_T(z) in place of the prior, what remains is ODE solver error:
    it must shrink as rtol/atol shrink."""
    x = gm3.sample(16, generator=torch.Generator().manual_seed(0))
    truth = _exact(gm3, sde, x, sde.eps)
    pT = gm3.marginal(sde, sde.T)
    errs = []
    for tol in [1e-3, 1e-5, 1e-7]:
        res = log_likelihood(sde, gm3.score_fn(sde), x, trace="exact", rtol=tol, atol=tol)
        assert res.logp.dtype == torch.float64 and res.logp.shape == (16,)
        torch.testing.assert_close(res.logp, res.prior_logp + res.delta_logp)
        errs.append((pT.log_prob(res.z) + res.delta_logp - truth).abs().max().item())
        assert res.vjps == 3 * res.nfe
    assert errs[2] < 1e-4, errs
    assert errs[2] < errs[0] / 10 and errs[1] < errs[0], errs
    # with the N(0, I) / N(0, sigma_max^2 I) prior the answer is close too: the prior mismatch
    # costs up to |z| |mu| / sigma_max^2 ~ 0.07 nats for VE here
    assert (res.logp - truth).abs().max().item() < 0.1


def test_wrong_divergence_sign_fails(gm3):
    """The same comparison fails for a wrong score (so the test can fail)."""
    sde = VPSDE()
    x = gm3.sample(8, generator=torch.Generator().manual_seed(0))
    wrong = lambda x, t: 0.9 * gm3.score_t(sde, x, t)
    res = log_likelihood(sde, wrong, x, rtol=1e-6, atol=1e-6)
    err = (gm3.marginal(sde, 1.0).log_prob(res.z) + res.delta_logp - _exact(gm3, sde, x, sde.eps)).abs().max()
    assert err > 0.05


def test_hutchinson_is_unbiased(gm3):
    sde = VPSDE()
    sf = gm3.score_fn(sde)
    x = gm3.sample(300, generator=torch.Generator().manual_seed(1))
    exact = log_likelihood(sde, sf, x, trace="exact", rtol=1e-5, atol=1e-5).logp
    for noise in ["rademacher", "gaussian"]:
        res = log_likelihood(sde, sf, x, trace="hutchinson", noise=noise, probes=2, rtol=1e-5, atol=1e-5,
                             generator=torch.Generator().manual_seed(3))
        d = res.logp - exact
        se = d.std() / math.sqrt(len(d))
        assert d.std() > 1e-3                        # it is a stochastic estimate ...
        assert d.mean().abs() < 4 * se + 1e-3, (noise, d.mean().item(), se.item())   # ... without bias
        assert res.vjps == 2 * res.nfe


def test_likelihood_never_leaves_eps_T(gm3):
    for sde in [VPSDE(), VESDE()]:
        rec = CountedScore(gm3.score_fn(sde), record_times=True)
        x = gm3.sample(8, generator=torch.Generator().manual_seed(0))
        for tol in [1e-2, 1e-8]:
            rec.times.clear()
            log_likelihood(sde, rec, x, rtol=tol, atol=tol)
            ts = torch.cat(rec.times)
            assert ts.min().item() >= sde.eps and ts.max().item() <= sde.T


def test_bits_per_dim_gaussian_closed_form():
    """x ~ N(0, s^2 I) in [-1, 1] units: E[bpd] = differential entropy of y = 128 (x + 1) in bits
    per dimension = 1/2 log2(2 pi e (128 s)^2)."""
    s, D, n = 0.2, 6, 20000
    x = s * torch.randn(n, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    logp = -0.5 * D * math.log(2 * math.pi * s ** 2) - (x ** 2).sum(1) / (2 * s ** 2)
    bpd = bits_per_dim(logp, x.shape)
    expect = 0.5 * math.log2(2 * math.pi * math.e * (128 * s) ** 2)
    assert bpd.mean().item() == pytest.approx(expect, abs=4 * bpd.std().item() / math.sqrt(n))
    # [0, 1] data: y = 256 x, one more bit; uniform density on the cube gives exactly n_bits
    assert bits_per_dim(logp, x.shape, data_range="[0,1]").mean().item() == pytest.approx(bpd.mean().item() + 1)
    assert bits_per_dim(torch.zeros(3), (3, 10), n_bits=5, data_range=(0.0, 1.0)).tolist() == [5.0] * 3
    assert bits_per_dim(torch.full((2,), -10 * math.log(2)), (2, 10)).tolist() == pytest.approx([8.0, 8.0])


def test_bits_per_dim_through_the_ode():
    """End to end: a single Gaussian through VP, likelihood by the ODE, bpd vs closed form."""
    D = 4
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, D, dtype=torch.float64),
                         torch.full((1, D), 0.3 ** 2, dtype=torch.float64))
    sde = VPSDE()
    x = gm.sample(64, generator=torch.Generator().manual_seed(0))
    res = log_likelihood(sde, gm.score_fn(sde), x, rtol=1e-6, atol=1e-6)
    var = 0.3 ** 2 * math.exp(-sde.schedule.integral(torch.tensor(sde.eps)).item()) + \
        sde.marginal_coeffs(torch.tensor([sde.eps], dtype=torch.float64))[1].item() ** 2
    closed = -0.5 * D * math.log(2 * math.pi * var) - (x ** 2).sum(1) / (2 * var)
    torch.testing.assert_close(bits_per_dim(res.logp, x.shape), bits_per_dim(closed, x.shape), atol=2e-3, rtol=0)


def test_encode_decode_roundtrip(gm3):
    sde = VPSDE()
    sf = gm3.score_fn(sde)
    x = gm3.sample(32, generator=torch.Generator().manual_seed(0))
    z, info = encode(sde, sf, x, rtol=1e-8, atol=1e-8)
    assert info.nfe > 0 and info.extra["clamped"] == 0
    # z is distributed like p_T: roughly unit scale, far from x
    assert z.std().item() == pytest.approx(1.0, abs=0.35)
    x2, _ = decode(sde, sf, z, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(x2, x, atol=1e-5, rtol=0)


def test_likelihood_bad_input(gm3):
    sde = VPSDE()
    sf = gm3.score_fn(sde)
    x = gm3.sample(4, generator=torch.Generator().manual_seed(0))
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN.*\[2\]"):
        log_likelihood(sde, sf, x)
    with pytest.raises(ValueError, match="exact"):
        log_likelihood(sde, sf, x[:2], trace="approx")
    with pytest.raises(ValueError, match="eps"):
        log_likelihood(sde, sf, x[:2], eps=2.0)
    with pytest.raises(ValueError, match="data_range"):
        bits_per_dim(torch.zeros(2), (2, 3), data_range="[0,255]")


def test_bits_per_dim_refuses_an_ambiguous_shape():
    """A bare (D,) tuple could be (B,) or (D,): only (B, *dims) or an int D are accepted."""
    with pytest.raises(ValueError, match=r"\(B, \*dims\)"):
        bits_per_dim(torch.zeros(2), (64,))
    assert bits_per_dim(torch.zeros(2), 64).shape == (2,)
    torch.testing.assert_close(bits_per_dim(torch.zeros(2), (2, 3, 4, 4)), bits_per_dim(torch.zeros(2), 48))
