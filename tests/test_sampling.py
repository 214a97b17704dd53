"""Every sampler reproduces an exact Gaussian mixture (no training involved)."""
import pytest
import torch

from models.analytic import make_mixture
from sde_lib import VESDE, VPSDE, subVPSDE
from solvers import sample

from test_solvers_helpers import assert_matches_mixture

SDES = {"vp": lambda: VPSDE(), "subvp": lambda: subVPSDE(), "ve": lambda: VESDE()}
N = 2000


@pytest.fixture(scope="module")
def gm4():
    return make_mixture("random", D=4, K=3, scale=2.0, std=0.5, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def gm32():
    return make_mixture("random", D=32, K=3, scale=1.0, std=0.5, generator=torch.Generator().manual_seed(3))


FAST = [
    ("euler_maruyama", dict(steps=100)),
    ("reverse_diffusion", dict(steps=100)),
    ("ancestral", dict(steps=100)),
    ("ddim", dict(steps=100)),
    ("heun", dict(steps=40)),
    ("ode", dict(rtol=1e-4, atol=1e-4)),
    ("ode", dict(method="rk4", steps=25)),
    ("sde", dict(method="euler", steps=100)),
    ("pc", dict(predictor="reverse_diffusion", corrector="annealed_langevin", step_size=0.1, steps=100)),
]


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("sampler,opts", FAST, ids=[f"{s}-{o.get('method', o.get('predictor', ''))}" for s, o in FAST])
def test_sampler_reproduces_mixture(sampler, opts, sde_name, gm4):
    sde = SDES[sde_name]()
    x, info = sample(sde, gm4.score_fn(sde), (N, 4), sampler, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64, **opts)
    assert x.shape == (N, 4) and x.dtype == torch.float64
    assert info.nfe > 0 and info.sampler == sampler
    assert_matches_mixture(x, gm4, torch.Generator().manual_seed(7), sw_factor=2.0, label=f"{sampler} {opts}")


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("predictor", ["reverse_diffusion", "ancestral", "euler_maruyama", "probability_flow"])
def test_pc_langevin_reproduces_mixture_32d(predictor, sde_name, gm32):
    """PC with the snr-controlled Langevin corrector, every predictor, every SDE (sub-VP included)."""
    sde = SDES[sde_name]()
    x, info = sample(sde, gm32.score_fn(sde), (1000, 32), "pc", predictor=predictor, corrector="langevin",
                     snr=0.1, steps=100, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert info.nfe == 200
    assert_matches_mixture(x, gm32, torch.Generator().manual_seed(7), sw_factor=2.0, label=f"pc {predictor}")


@pytest.mark.parametrize("sde_name", list(SDES))
def test_probability_flow_predictor_is_the_deterministic_flow(sde_name):
    """The probability-flow predictor alone draws no noise (two generators, one x_T, one output),
    and on Gaussian data N(0, v I) with the exact score it transports N(0, s_T^2 + m_T^2 v) to
    N(0, s_eps^2 + m_eps^2 v): the flow map is the linear scaling sqrt(p_eps var / p_T var)."""
    sde = SDES[sde_name]()
    v = 0.3
    m_T, s_T = (c.item() for c in sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64)))
    m_e, s_e = (c.item() for c in sde.marginal_coeffs(torch.tensor([sde.eps], dtype=torch.float64)))

    def score(x, t):
        m, s = sde.marginal_coeffs(t)
        return -x / (s ** 2 + m ** 2 * v)[:, None]
    xT = torch.randn(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    xT = xT * (s_T ** 2 + m_T ** 2 * v) ** 0.5
    runs = [sample(sde, score, (500, 3), "pc", predictor="probability_flow", corrector="none", steps=2000,
                   x_T=xT, denoise=False, generator=torch.Generator().manual_seed(g), dtype=torch.float64)[0]
            for g in (1, 2)]
    assert torch.equal(runs[0], runs[1])
    gain = (runs[0] / xT).flatten()
    assert torch.allclose(gain, gain[0].expand_as(gain), rtol=1e-12)       # a linear map, one gain
    exact = ((s_e ** 2 + m_e ** 2 * v) / (s_T ** 2 + m_T ** 2 * v)) ** 0.5
    coarse = sample(sde, score, (1, 3), "pc", predictor="probability_flow", corrector="none", steps=200,
                    x_T=xT[:1], denoise=False, dtype=torch.float64)[0]
    err_fine, err_coarse = abs(gain[0].item() / exact - 1), abs((coarse / xT[:1])[0, 0].item() / exact - 1)
    # a first-order chain: 10x the steps, 10x less error (measured 1.0% / 0.86% / 0.03% at 2000
    # steps for VP / VE / sub-VP), so the flow map is the limit
    assert err_fine < 0.012 and 8 < err_coarse / err_fine < 12, (err_fine, err_coarse)


def test_ncsn_annealed_langevin_corrector_only(gm4):
    """predictor='none' + annealed Langevin = NCSN's sampler, on VE."""
    sde = VESDE()
    x, info = sample(sde, gm4.score_fn(sde), (N, 4), "annealed_langevin", steps=25, corrector_steps=20,
                     step_size=0.5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert info.nfe == 25 * 20
    assert_matches_mixture(x, gm4, torch.Generator().manual_seed(7), sw_factor=2.0, label="annealed_langevin")


@pytest.mark.parametrize("wrong", ["scaled_score", "wrong_sde", "sign"])
def test_metric_catches_a_wrong_sampler(wrong, gm4):
    """The same checks fail for a slightly wrong score or a wrong sign, so they can fail."""
    sde = VPSDE()
    score = gm4.score_fn(sde)
    if wrong == "scaled_score":
        fn = lambda x, t: 0.8 * score(x, t)
    elif wrong == "wrong_sde":      # the score of the mixture under a different VP schedule
        fn = gm4.score_fn(VPSDE(beta_min=0.1, beta_max=10.0))
    else:                           # probability-flow drift sign flipped through the score: x -> x + g^2/2 s
        fn = lambda x, t: -score(x, t)
    x, _ = sample(sde, fn, (N, 4), "euler_maruyama", steps=100, generator=torch.Generator().manual_seed(1),
                  dtype=torch.float64)
    with pytest.raises(AssertionError):
        assert_matches_mixture(x, gm4, torch.Generator().manual_seed(7), sw_factor=2.0)


def test_nfe_counts(gm4):
    sde = VPSDE()
    sf = gm4.score_fn(sde)
    g = lambda: torch.Generator().manual_seed(0)
    shape = (10, 4)
    assert sample(sde, sf, shape, "euler_maruyama", steps=7, generator=g())[1].nfe == 7
    assert sample(sde, sf, shape, "euler_maruyama", steps=7, denoise=True, generator=g())[1].nfe == 8
    assert sample(sde, sf, shape, "pc", steps=7, corrector_steps=3, generator=g())[1].nfe == 7 * 4
    assert sample(sde, sf, shape, "pc", predictor="none", corrector="langevin", steps=7, corrector_steps=2,
                  generator=g())[1].nfe == 14
    assert sample(sde, sf, shape, "pc", corrector="none", steps=7, generator=g())[1].nfe == 7
    assert sample(sde, sf, shape, "heun", steps=7, generator=g())[1].nfe == 14
    assert sample(sde, sf, shape, "ode", method="rk4", steps=7, generator=g())[1].nfe == 28
    assert sample(sde, sf, shape, "ode", method="euler", steps=7, generator=g())[1].nfe == 7
    # torchsde evaluates the drift once more at the start to check shapes
    assert sample(sde, sf, shape, "sde", steps=7, generator=g())[1].nfe == 8
    calls = []
    x, info = sample(sde, lambda x, t: calls.append(1) or sf(x, t), shape, "ode", generator=g())
    assert info.nfe == len(calls)


def test_same_generator_same_samples(gm4):
    sde = VESDE()
    sf = gm4.score_fn(sde)
    for sampler in ["euler_maruyama", "pc", "ancestral", "ode", "sde"]:
        a, _ = sample(sde, sf, (50, 4), sampler, generator=torch.Generator().manual_seed(3), **(
            {} if sampler == "ode" else {"steps": 20}))
        b, _ = sample(sde, sf, (50, 4), sampler, generator=torch.Generator().manual_seed(3), **(
            {} if sampler == "ode" else {"steps": 20}))
        c, _ = sample(sde, sf, (50, 4), sampler, generator=torch.Generator().manual_seed(4), **(
            {} if sampler == "ode" else {"steps": 20}))
        assert torch.equal(a, b), sampler
        assert not torch.allclose(a, c), sampler


@pytest.mark.parametrize("sampler,opts", [
    ("euler_maruyama", {}), ("pc", dict(predictor="reverse_diffusion", corrector="langevin")),
    ("pc", dict(predictor="ancestral", corrector="annealed_langevin")),
    ("annealed_langevin", {}), ("ode", dict(method="rk4")), ("sde", dict(method="euler")),
    ("sde", dict(method="milstein"))])
def test_per_sample_seeds_independent_of_batch(sampler, opts, gm32):
    """seeds=[...]: sample i is the same drawn alone or in a batch; the Langevin step
    (default rule "kernel": depends on t only) cannot be changed by batch-mates."""
    sde = VPSDE()
    sf = gm32.score_fn(sde)
    seeds = list(range(100, 164))
    kw = dict(opts, steps=20, dtype=torch.float64)
    batch, _ = sample(sde, sf, (64, 32), sampler, seeds=seeds, **kw)
    for i in [0, 17, 63]:
        alone, _ = sample(sde, sf, (1, 32), sampler, seeds=[seeds[i]], **kw)
        torch.testing.assert_close(alone[0], batch[i], rtol=1e-9, atol=1e-9)
    other, _ = sample(sde, sf, (64, 32), sampler, seeds=[s + 1000 for s in seeds], **kw)
    assert not torch.allclose(other, batch)


def test_batch_averaged_step_would_break_independence(gm32):
    """Sanity check of the previous test's power: with the same seeds, changing a batch-mate's
    start changes nothing for the others."""
    sde = VESDE()
    sf = gm32.score_fn(sde)
    x_T = sde.prior_sampling((8, 32), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, _ = sample(sde, sf, None, "pc", x_T=x_T, seeds=list(range(8)), steps=10)
    x_T2 = x_T.clone()
    x_T2[0] *= 3.0
    b, _ = sample(sde, sf, None, "pc", x_T=x_T2, seeds=list(range(8)), steps=10)
    assert not torch.allclose(a[0], b[0])
    torch.testing.assert_close(a[1:], b[1:], rtol=0, atol=0)


def test_torchsde_euler_matches_euler_maruyama_path(gm4):
    """s = T - t reparameterisation: torchsde's Euler on the same Brownian increments is our EM."""
    for sde in [VPSDE(), VESDE()]:
        sf = gm4.score_fn(sde)
        a, _ = sample(sde, sf, (200, 2, 2), "euler_maruyama", steps=50, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(5))
        b, info = sample(sde, sf, (200, 2, 2), "sde", steps=50, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(5))
        assert info.options["brownian"] == "stream" and b.shape == (200, 2, 2)
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


def test_torchsde_srk_interval_distribution(gm4):
    sde = VESDE()
    x, info = sample(sde, gm4.score_fn(sde), (1000, 4), "sde", method="srk", steps=25, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(5))
    assert info.options["brownian"] == "interval"
    assert_matches_mixture(x, gm4, torch.Generator().manual_seed(7), sw_factor=2.0, label="srk")


def test_images_options_trajectory_denoise(gm4):
    """Image-shaped input [B, C, H, W], return_trajectory, denoise, x_T, dtype, progress."""
    sde = VPSDE()
    sf = gm4.score_fn(sde)
    x_T = sde.prior_sampling((5, 1, 2, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for sampler, opts in [("euler_maruyama", dict(steps=10)), ("pc", dict(steps=10)), ("ode", {}),
                          ("ddim", dict(steps=10)), ("sde", dict(steps=10))]:
        x, info = sample(sde, sf, (5, 1, 2, 2), sampler, x_T=x_T, return_trajectory=True, denoise=True, **opts)
        assert x.shape == (5, 1, 2, 2) and x.dtype == torch.float64
        assert info.trajectory.shape[1:] == (5, 1, 2, 2)
        torch.testing.assert_close(info.trajectory[0], x_T)
        assert info.times[0].item() == pytest.approx(sde.T) and info.times[-1].item() == pytest.approx(sde.eps)
        assert info.seconds > 0 and info.options["denoise"] is True
    x32, _ = sample(sde, sf, (5, 4), "euler_maruyama", steps=3, dtype=torch.float32, progress=True)
    assert x32.dtype == torch.float32


def test_denoise_is_tweedie(gm4):
    """Denoising an exact p_eps sample with the exact score gives E[x_0 | x_eps]: a smaller spread
    around the component means than x_eps itself (VE, eps large enough to see it)."""
    sde = VESDE()
    sf = gm4.score_fn(sde)
    eps = 0.3
    pe = gm4.marginal(sde, eps)
    x_T = gm4.marginal(sde, sde.T).sample(4, generator=torch.Generator().manual_seed(0))
    xe = pe.sample(4, generator=torch.Generator().manual_seed(1))
    # one Tweedie step on x at eps: x + s^2 score
    x0_hat, info = sample(sde, sf, None, "ddim", x_T=x_T, steps=1, eps=eps, denoise=True)
    assert info.nfe == 2
    from solvers.sampling import tweedie
    s2 = sde.sigma(torch.tensor([eps], dtype=torch.float64)) ** 2
    torch.testing.assert_close(tweedie(sde, sf, xe, eps), xe + s2 * sf(xe, torch.full((4,), eps, dtype=torch.float64)))


def test_bad_input_raises(gm4):
    sde = VPSDE()
    sf = gm4.score_fn(sde)
    with pytest.raises(ValueError, match="euler_maruyama"):
        sample(sde, sf, (4, 4), "nonsense")
    with pytest.raises(ValueError, match="reverse_diffusion"):
        sample(sde, sf, (4, 4), "pc", predictor="rk45")
    with pytest.raises(ValueError, match="annealed_langevin"):
        sample(sde, sf, (4, 4), "pc", corrector="hmc")
    with pytest.raises(ValueError, match="steps.*0"):
        sample(sde, sf, (4, 4), "euler_maruyama", steps=0)
    with pytest.raises(ValueError, match="eps.*1.5"):
        sample(sde, sf, (4, 4), eps=1.5)
    with pytest.raises(ValueError, match="eps.*0"):
        sample(sde, sf, (4, 4), eps=0.0)
    with pytest.raises(ValueError, match="snr.*-0.1"):
        sample(sde, sf, (4, 4), "pc", snr=-0.1, steps=3)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 4\)"):
        sample(sde, sf, (4, 3), x_T=torch.zeros(4, 4))
    with pytest.raises(ValueError, match="snr"):
        sample(sde, sf, (4, 4), "ode", snr=0.1)
    with pytest.raises(ValueError, match="rk45"):                 # the error lists the known methods
        sample(sde, sf, (4, 4), "ode", method="rk23")
    with pytest.raises(ValueError, match="seeds"):
        sample(sde, sf, (4, 4), seeds=[1, 2])


def test_ode_never_leaves_eps_T(gm4):
    """Adaptive dopri5 at loose and tight tolerances: every t handed to the score lies in [eps, T],
    the last state is at exactly eps, and without the guard torchdiffeq would step past eps."""
    from solvers import CountedScore
    from torchdiffeq import odeint
    for sde in [VPSDE(), VESDE()]:
        sf = gm4.score_fn(sde)
        x_T = sde.prior_sampling((256, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        for tol in [1e-2, 1e-8]:
            rec = CountedScore(sf, record_times=True)
            x, info = sample(sde, rec, None, "ode", x_T=x_T, rtol=tol, atol=tol)
            ts = torch.cat(rec.times)
            assert ts.min().item() >= sde.eps and ts.max().item() <= sde.T
            assert ts.min().item() == pytest.approx(sde.eps, rel=1e-12)   # it lands on eps
    # the raw solver (no step_t, no clamp) evaluates beyond eps: the guard is needed
    # (VE, whose coefficients are defined for t < 0 too, so the raw run completes)
    sde = VESDE()
    sde.check_time = False
    rsde = sde.reverse(gm4.score_fn(sde), probability_flow=True)
    x_T = sde.prior_sampling((256, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seen = []

    def f(t, y):
        seen.append(t.item())
        return rsde.sde(y, t.expand(256).to(y.dtype))[0]

    odeint(f, x_T, torch.tensor([sde.T, sde.eps], dtype=torch.float64), rtol=1e-2, atol=1e-2)
    assert min(seen) < sde.eps


# Every predictor with every corrector on every SDE. Corrector-only sampling is run as
# NCSN's sampler (annealed Langevin on VE): on VP/sub-VP, and with the snr-rule Langevin,
# it converges too slowly to pass the same bar at a test's budget (measured, 32-D mixture,
# 100 levels x 20 steps: sliced W1 2.0x (VP) and 3.2x (sub-VP) the true-sample floor).
PC_CASES = [(p, c, s) for s in SDES for p in ["reverse_diffusion", "ancestral", "euler_maruyama", "probability_flow"]
            for c in ["langevin", "annealed_langevin", "none"]] + [("none", "annealed_langevin", "ve")]


@pytest.mark.slow
@pytest.mark.parametrize("predictor, corrector, sde_name", PC_CASES)
def test_slow_all_pc_pairs_images(predictor, corrector, sde_name, gm32):
    """Every predictor/corrector pair on every SDE, image-shaped [B, 2, 4, 4], more steps."""
    sde = SDES[sde_name]()
    steps, corr = (400, 5) if predictor == "none" else (300, 1)
    if (predictor, corrector) == ("probability_flow", "none"):
        # a deterministic first-order chain with no corrector to pull it back: its flow-map error
        # falls as 1/N (1% of scale at 2000 steps on VP, about 7% at 300;
        # test_probability_flow_predictor_is_the_deterministic_flow), so it gets 2000 steps
        steps = 2000
    x, info = sample(sde, gm32.score_fn(sde), (2000, 2, 4, 4), "pc", predictor=predictor, corrector=corrector,
                     snr=0.1, step_size=0.1, steps=steps, corrector_steps=corr,
                     generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert_matches_mixture(x.reshape(2000, 32), gm32, torch.Generator().manual_seed(7), sw_factor=1.6,
                           label=f"{predictor}+{corrector} on {sde_name}")
