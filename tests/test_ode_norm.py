"""The ODE error norm: per-sample control keeps every sample's likelihood as accurate in a batch as alone
(the batch-wide RMS lets easy samples dilute a hard one's error)."""
import pytest
import torch

from models.analytic import make_mixture
from sde_lib import VPSDE
from solvers import log_likelihood
from solvers.ode import error_norm


@pytest.fixture(scope="module")
def setup():
    gm = make_mixture("random", D=3, K=3, scale=1.5, std=0.6, generator=torch.Generator().manual_seed(2))
    sde = VPSDE()
    x = gm.sample(200, generator=torch.Generator().manual_seed(0))
    truth = gm.log_prob_t(sde, x, torch.full((200,), sde.eps, dtype=x.dtype))
    return gm, sde, x, truth, gm.marginal(sde, 1.0)


def _errors(gm, sde, x, truth, pT, norm, tol=1e-3):
    r = log_likelihood(sde, gm.score_fn(sde), x, rtol=tol, atol=tol, norm=norm)
    return (pT.log_prob(r.z) + r.delta_logp - truth).abs()


def test_per_sample_norm_keeps_the_worst_samples_accurate_in_a_batch(setup):
    """The 5 worst samples of a batch of 200, each also solved alone (default method rk45, tol 1e-3).
    norm="sample" accepts a step only if every sample's own error estimate passes, so the worst
    sample in the batch is >= 10x more accurate than with norm="batch" (where easy samples dilute a
    hard one's error), and batching leaves the worst samples about as accurate as alone (median
    ratio <= 1.5, measured 0.32; not for every sample: an error estimate is not the error), whereas
    with norm="batch" the median of them is >= 3x worse in the batch than alone (measured 3.8)."""
    gm, sde, x, truth, pT = setup
    ratios, worst_err = {}, {}
    for norm in ("sample", "batch"):
        in_batch = _errors(gm, sde, x, truth, pT, norm)
        worst = in_batch.argsort(descending=True)[:5]
        alone = torch.stack([_errors(gm, sde, x[i:i + 1], truth[i:i + 1], pT, norm)[0] for i in worst.tolist()])
        ratios[norm] = (in_batch[worst] / alone).median().item()
        worst_err[norm] = in_batch.max().item()
    assert worst_err["sample"] < 0.1 * worst_err["batch"], worst_err
    assert ratios["sample"] <= 1.5 and ratios["batch"] >= 3.0, ratios


def test_norms_on_tuples_and_choices():
    B = 4
    err = (torch.zeros(B, 3), torch.zeros(B))
    err[0][2, 0] = 2.0                                        # one entry of sample 2 has error 2
    assert error_norm("sample", B)(err).item() == pytest.approx((4.0 / 4) ** 0.5)       # its RMS over 3 + 1 entries
    assert error_norm("batch", B)(err).item() == pytest.approx((4.0 / 16) ** 0.5)
    assert error_norm("mixed", B)(err).item() == pytest.approx((4.0 / 12) ** 0.5)
    with pytest.raises(ValueError, match="error norm"):
        error_norm("l1", B)


def test_rk45_uses_dormand_prince_error_estimate():
    """torchdiffeq's dopri5 weighs the stages of its error estimate with Shampine's coefficients;
    Dormand and Prince's own estimate, b5 - b4* with their published 4th-order weights b4*, is
    exactly 3/2 of it, stage by stage. `rk45` is dopri5 with its error norm scaled by that factor
    (and a safety factor of 0.7, see solvers.ode)."""
    from torchdiffeq._impl.dopri5 import _DORMAND_PRINCE_SHAMPINE_TABLEAU as tab
    from solvers.ode import RESCALED
    b4 = torch.tensor([5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40],
                      dtype=torch.float64)
    assert RESCALED["rk45"][:2] == ("dopri5", 1.5)
    assert torch.allclose(tab.c_sol - b4, 1.5 * tab.c_error.double(), rtol=0, atol=1e-15)
    err = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert error_norm("batch", 4, 1.5)(err) == pytest.approx(1.5 * error_norm("batch", 4)(err).item())


def test_rk45_matches_scipy_rk45_accuracy_where_dopri5_does_not():
    """The issue's problem (16-D mixture, VP, exact score, float64, 100 samples): at rtol = atol in
    1e-4..1e-6, the endpoint error of rk45 is the reference's (scipy RK45 on the flat batch) within
    20% on geometric mean, at <= 1.2x its NFE; torchdiffeq's dopri5 (Shampine's estimate) is 1.5x
    less accurate. Measured: rk45 0.98x error at 1.16x NFE, dopri5 1.56x (bench/ode_accuracy.py)."""
    import math
    from scipy.integrate import solve_ivp
    from solvers import CountedScore
    from solvers.ode import odeint_flow
    torch.manual_seed(0)
    gm = make_mixture("random", D=16, K=5, generator=torch.Generator().manual_seed(0))
    sde = VPSDE()
    score = gm.score_fn(sde)
    xT = sde.prior_sampling((100, 16), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = odeint_flow(sde, score, xT, sde.T, sde.eps, "dopri8", 1e-12, 1e-12)[0][-1]
    rs = sde.reverse(score, probability_flow=True)

    def rhs(t, y):
        xt = torch.from_numpy(y).reshape(xT.shape)
        return rs.sde(xt, torch.full((100,), t, dtype=xt.dtype))[0].reshape(-1).numpy()

    def rms(y):
        return (y - ref).pow(2).mean().sqrt().item()
    ratios = {"rk45": [], "dopri5": []}
    nfe_ratio = []
    for tol in (1e-4, 1e-5, 1e-6):
        s = solve_ivp(rhs, (sde.T, sde.eps), xT.reshape(-1).numpy(), rtol=tol, atol=tol, method="RK45")
        e_ref = rms(torch.from_numpy(s.y[:, -1]).reshape(xT.shape))
        for method in ratios:
            c = CountedScore(score)
            ratios[method].append(rms(odeint_flow(sde, c, xT, sde.T, sde.eps, method, tol, tol)[0][-1]) / e_ref)
            if method == "rk45":
                nfe_ratio.append(c.nfe / s.nfev)

    def geo(v):
        return math.exp(sum(map(math.log, v)) / len(v))
    assert geo(ratios["rk45"]) < 1.2 and geo(nfe_ratio) <= 1.2, (ratios, nfe_ratio)
    assert geo(ratios["dopri5"]) > 1.4, ratios


def test_ode_sampler_takes_the_norm_option():
    from solvers import sample
    gm = make_mixture("random", D=3, K=3, scale=1.5, std=0.6, generator=torch.Generator().manual_seed(2))
    sde = VPSDE()
    out = {}
    for norm in ("batch", "sample"):
        x, info = sample(sde, gm.score_fn(sde), (50, 3), "ode", norm=norm, rtol=1e-3, atol=1e-3,
                         generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        assert info.options["norm"] == norm and info.options["method"] == "rk45"
        out[norm] = (x, info.nfe)
    assert out["sample"][1] > out["batch"][1]            # the worst sample decides: more, shorter steps
    with pytest.raises(ValueError, match="error norm"):
        sample(sde, gm.score_fn(sde), (5, 3), "ode", norm="l1")


def test_controller_options_pass_through_and_are_checked():
    gm = make_mixture("random", D=3, K=3, scale=1.5, std=0.6, generator=torch.Generator().manual_seed(2))
    sde = VPSDE()
    x = gm.sample(20, generator=torch.Generator().manual_seed(0))
    nfe = {s: log_likelihood(sde, gm.score_fn(sde), x, rtol=1e-4, atol=1e-4, controller={"safety": s}).nfe
           for s in (0.9, 0.5)}
    assert nfe[0.5] > nfe[0.9]                      # a smaller safety factor: shorter steps
    with pytest.raises(ValueError, match=r"unknown ODE controller option\(s\) \['gain'\]"):
        log_likelihood(sde, gm.score_fn(sde), x, controller={"gain": 2})
