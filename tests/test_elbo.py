"""The SDE ELBO against closed forms on a Gaussian mixture, and the importance sampler of t."""
import math

import pytest
import torch

from models.analytic import make_mixture
from sde_lib import VESDE, VPSDE, subVPSDE
from solvers.elbo import TimeProposal, elbo


@pytest.fixture(scope="module")
def gm3():
    return make_mixture("random", D=3, K=3, scale=1.5, std=0.6, generator=torch.Generator().manual_seed(2))


def test_time_proposal_is_g2_over_s2():
    """VP: int g^2/s^2 dt = log(e^B(t) - 1) in closed form; the density is normalised, follows
    g^2/s^2 to 1% and the draws follow the density."""
    sde = VPSDE()
    prop = TimeProposal(sde, 1e-5)
    B = lambda t: sde.schedule.integral(torch.tensor(t, dtype=torch.float64)).item()
    closed = math.log(math.expm1(B(1.0))) - math.log(math.expm1(B(1e-5)))
    assert prop.mass == pytest.approx(closed, rel=1e-6)
    assert (prop.density * prop.widths).sum().item() == pytest.approx(1.0)
    mid = (prop.edges[1:] + prop.edges[:-1]) / 2
    g2 = sde.diffusion_coeff(mid) ** 2 / sde.marginal_coeffs(mid)[1] ** 2
    torch.testing.assert_close(prop.density, g2 / prop.mass, rtol=0.01, atol=0)
    t, p = prop.sample(200000, torch.Generator().manual_seed(0), torch.float64)
    assert t.min() >= 1e-5 and t.max() <= 1.0
    for a, b in [(1e-5, 1e-3), (1e-3, 0.1), (0.1, 1.0)]:
        inside = ((t >= a) & (t < b)).double().mean().item()
        expect = (math.log(math.expm1(B(b))) - math.log(math.expm1(B(a)))) / closed
        assert inside == pytest.approx(expect, abs=4 * math.sqrt(expect * (1 - expect) / 200000))
    # VE: g^2/s^2 is constant, so the proposal is uniform
    ve = TimeProposal(VESDE(), 1e-5)
    torch.testing.assert_close(ve.density, torch.full_like(ve.density, 1 / (1 - 1e-5)))


@pytest.mark.parametrize("sde", [VPSDE(), subVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_elbo_is_tight_with_the_exact_score_and_prior(sde, gm3):
    """Exact score and the true p_T as prior: the forward process is the exact posterior, so the
    estimate equals log p_eps(x) in expectation, for every x (and either proposal)."""
    x = gm3.marginal(sde, sde.eps).sample(6, generator=torch.Generator().manual_seed(0))
    truth = gm3.log_prob_t(sde, x, torch.full((6,), sde.eps, dtype=x.dtype))
    pT = gm3.marginal(sde, sde.T)
    for proposal in ["likelihood", "uniform"]:
        r = elbo(sde, gm3.score_fn(sde), x, n_t=20000, trace="exact", proposal=proposal, chunk=20000,
                 generator=torch.Generator().manual_seed(1), prior_logp=pT.log_prob)
        z = (r.elbo - truth) / r.stderr
        assert z.abs().max() < 4.5, (proposal, z.tolist(), r.stderr.tolist())
        assert r.stderr.max() < 0.2 and r.nfe == 6 and r.vjps == 3 * 6
    # the closed-form N(0, I) prior term: close, since p_T is nearly N(0, I) (VP) ...
    r = elbo(sde, gm3.score_fn(sde), x, n_t=20000, trace="exact", chunk=20000, generator=torch.Generator().manual_seed(1))
    assert (r.elbo - truth).abs().max() < 5 * r.stderr.max() + 0.1


def test_elbo_prior_term_closed_form(gm3):
    """E_q[log N(x_T; 0, I)] in closed form equals its Monte Carlo average."""
    sde = VPSDE()
    x = gm3.sample(5, generator=torch.Generator().manual_seed(0))
    a = elbo(sde, gm3.score_fn(sde), x, n_t=20000, trace="exact", chunk=20000, generator=torch.Generator().manual_seed(4))
    b = elbo(sde, gm3.score_fn(sde), x, n_t=20000, trace="exact", chunk=20000, generator=torch.Generator().manual_seed(4),
             prior_logp=sde.prior_logp)
    torch.testing.assert_close(a.prior, b.prior, atol=0.02, rtol=0)


def test_perturbed_score_lies_below_by_the_score_matching_term(gm3):
    """s = s* + c: averaged over x ~ p_eps the bound drops by 1/2 |c|^2 int_eps^T g^2 dt (the
    score-matching term; its cross term 2 c . E_{p_t}[s*] vanishes). Common random numbers."""
    sde = VPSDE()
    c = torch.tensor([0.6, -0.4, 0.2], dtype=torch.float64)
    x = gm3.marginal(sde, sde.eps).sample(4000, generator=torch.Generator().manual_seed(5))
    exact = gm3.score_fn(sde)
    kw = dict(n_t=4, trace="exact", chunk=16000)
    a = elbo(sde, exact, x, generator=torch.Generator().manual_seed(6), **kw)
    b = elbo(sde, lambda y, t: exact(y, t) + c, x, generator=torch.Generator().manual_seed(6), **kw)
    d = b.elbo - a.elbo
    B = lambda t: sde.schedule.integral(torch.tensor(t, dtype=torch.float64)).item()
    predicted = -0.5 * (c ** 2).sum().item() * (B(1.0) - B(sde.eps))
    se = d.std().item() / math.sqrt(len(d))
    assert d.mean().item() == pytest.approx(predicted, abs=4 * se), (d.mean().item(), predicted, se)
    assert se < 0.05 * abs(predicted)


def test_elbo_hutchinson_and_bad_input(gm3):
    sde = VPSDE()
    x = gm3.sample(4, generator=torch.Generator().manual_seed(0))
    ex = elbo(sde, gm3.score_fn(sde), x, n_t=4000, trace="exact", generator=torch.Generator().manual_seed(1))
    hu = elbo(sde, gm3.score_fn(sde), x, n_t=4000, trace="hutchinson", generator=torch.Generator().manual_seed(1))
    se = torch.sqrt(ex.stderr ** 2 + hu.stderr ** 2)
    assert ((hu.elbo - ex.elbo) / se).abs().max() < 4.5 and hu.vjps == hu.nfe
    with pytest.raises(ValueError, match="n_t"):
        elbo(sde, gm3.score_fn(sde), x, n_t=1)
    with pytest.raises(ValueError, match="proposal"):
        elbo(sde, gm3.score_fn(sde), x, proposal="beta")
    with pytest.raises(ValueError, match="NaN"):
        elbo(sde, gm3.score_fn(sde), x * float("nan"))
