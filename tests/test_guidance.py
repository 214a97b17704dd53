"""Guidance combinators and inverse problems against the exact conditional oracle."""
import math

import pytest
import torch

import solvers
from models.analytic import GaussianMixture, make_mixture
from sde_lib import VESDE, VPSDE, subVPSDE
from solvers import classifier_free_guidance, classifier_guidance, inpaint, colorize, universal_guidance
from solvers.metrics import dlogp

F64 = torch.float64
SDES = {"vp": VPSDE, "subvp": subVPSDE, "ve": VESDE}
N = 2000

# Options per sampler for the guided-sampling test; a sampler added to solvers.SAMPLERS later
# (e.g. dpmpp_2m) runs with `steps=200` unless listed here (generous, so stochastic ones converge too).
SAMPLER_OPTIONS = {
    "euler_maruyama": dict(steps=200), "pc": dict(steps=100, corrector="annealed_langevin", step_size=0.1),
    "ancestral": dict(steps=200), "reverse_diffusion": dict(steps=200),
    "annealed_langevin": dict(steps=25, corrector_steps=20, step_size=0.5), "ddim": dict(steps=100),
    "heun": dict(steps=40), "ode": dict(rtol=1e-5, atol=1e-5), "sde": dict(method="euler", steps=200),
    # DDIM with eta = 1 in sigma space (posterior noise variance): first order and over-sharp on
    # coarse grids (+0.16 nats at 50 steps on this component, +0.02 at 400), so a first-order budget
    "euler_ancestral": dict(steps=400),
}


@pytest.fixture(scope="module")
def ring():
    return make_mixture("ring", D=2, K=3, scale=1.5, std=0.8)   # overlapping: p(y | x) matters


def assigned_fraction(gm, x, y):
    """Fraction of x whose most probable component under gm (at t = 0) is y."""
    t0 = torch.zeros(x.shape[0], dtype=x.dtype)
    return (gm.classifier_fn(VPSDE())(x, t0).argmax(1) == y).double().mean().item()


@pytest.mark.parametrize("name", list(SDES))
def test_classifier_guidance_scale_one_is_the_component_score(name, ring):
    sde = SDES[name]()
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(64, 2, generator=g, dtype=F64)
    t = 0.01 + 0.98 * torch.rand(64, generator=g, dtype=F64)
    y = torch.randint(0, 3, (64,), generator=g)
    guided = classifier_guidance(ring.score_fn(sde), ring.classifier_fn(sde), y, 1.0)
    expected = torch.stack([ring.component(k).score_t(sde, x, t) for k in range(3)], 1)[torch.arange(64), y]
    torch.testing.assert_close(guided(x, t), expected, rtol=1e-9, atol=1e-9)
    guided1 = classifier_guidance(ring.score_fn(sde), ring.classifier_fn(sde), 2, 1.0)
    torch.testing.assert_close(guided1(x, t), ring.component(2).score_t(sde, x, t), rtol=1e-9, atol=1e-9)


def test_cfg_w0_is_conditional_and_equals_classifier_guidance(ring):
    sde = VPSDE()
    g = torch.Generator().manual_seed(1)
    x = 3 * torch.randn(32, 2, generator=g, dtype=F64)
    t = 0.01 + 0.98 * torch.rand(32, generator=g, dtype=F64)
    cond, uncond = ring.component(1).score_fn(sde), ring.score_fn(sde)
    assert torch.equal(classifier_free_guidance(cond, uncond, 0.0)(x, t), cond(x, t))
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, -1.0)(x, t), uncond(x, t))
    for w in (0.5, 3.0):
        cg = classifier_guidance(uncond, ring.classifier_fn(sde), 1, 1.0 + w)
        torch.testing.assert_close(classifier_free_guidance(cond, uncond, w)(x, t), cg(x, t), rtol=1e-9, atol=1e-9)


def guided_run(ring, sampler, scale, y=0):
    # NCSN's corrector-only sampler runs on its own SDE (VE), as in test_sampling; the rest on VP.
    sde = VESDE() if sampler == "annealed_langevin" else VPSDE()
    score = classifier_guidance(ring.score_fn(sde), ring.classifier_fn(sde), y, scale)
    opts = SAMPLER_OPTIONS.get(sampler, dict(steps=200))
    x, info = solvers.sample(sde, score, (N, 2), sampler, generator=torch.Generator().manual_seed(2),
                             dtype=F64, **opts)
    assert torch.isfinite(x).all()
    true = ring.component(y).sample(N, generator=torch.Generator().manual_seed(3))
    d, se = dlogp(x, ring.component(y).log_prob, true)
    return x, true, d, se


@pytest.mark.parametrize("sampler", list(solvers.SAMPLERS))
def test_classifier_guidance_samples_the_component_every_sampler(sampler, ring):
    """Scale 1 with exact classifier and score: the samples follow component y (frequency of
    samples assigned to y, and dlogp against the component, within 4 standard errors)."""
    x, true, d, se = guided_run(ring, sampler, 1.0)
    f, f_true = assigned_fraction(ring, x, 0), assigned_fraction(ring, true, 0)
    f_se = math.sqrt(f_true * (1 - f_true) / N) * math.sqrt(2)
    assert abs(f - f_true) < 4 * f_se + 0.005, f"{sampler}: assigned to y {f:.4f} vs component {f_true:.4f}"
    assert abs(d) < 4 * se + 0.02, f"{sampler}: dlogp {d:.4f} +- {se:.4f}"


def test_guidance_checks_can_fail(ring):
    """The same criteria reject scale 0.8 (too weak) and scale 1.5 (too sharp)."""
    for scale in (0.8, 1.5):
        x, true, d, se = guided_run(ring, "euler_maruyama", scale)
        f, f_true = assigned_fraction(ring, x, 0), assigned_fraction(ring, true, 0)
        f_se = math.sqrt(f_true * (1 - f_true) / N) * math.sqrt(2)
        assert abs(f - f_true) > 4 * f_se + 0.005 or abs(d) > 4 * se + 0.02, scale


def test_guidance_errors(ring):
    sde = VPSDE()
    with pytest.raises(ValueError, match="finite number"):
        classifier_guidance(ring.score_fn(sde), ring.classifier_fn(sde), 0, float("nan"))
    with pytest.raises(ValueError, match="int label or a 1-D integer tensor"):
        classifier_guidance(ring.score_fn(sde), ring.classifier_fn(sde), 0.5, 1.0)
    fn = classifier_guidance(ring.score_fn(sde), ring.classifier_fn(sde), 5, 1.0)
    with pytest.raises(ValueError, match=r"\[0, K\) = \[0, 3\)"):
        fn(torch.zeros(4, 2, dtype=F64), torch.full((4,), 0.5, dtype=F64))
    fn = classifier_guidance(ring.score_fn(sde), ring.classifier_fn(sde), torch.tensor([0, 1]), 1.0)
    with pytest.raises(ValueError, match=r"shape \[B\] = \[4\]"):
        fn(torch.zeros(4, 2, dtype=F64), torch.full((4,), 0.5, dtype=F64))
    with pytest.raises(ValueError, match="needs the SDE"):
        universal_guidance(lambda x, t: x, lambda x0: x0.sum(1), 1.0)
    with pytest.raises(ValueError, match="backward_steps"):
        universal_guidance(ring.score_fn(sde), lambda x0: x0.sum(1), 1.0, backward_steps=-1)


@pytest.mark.parametrize("name", list(SDES))
def test_universal_guidance_closed_form_for_a_gaussian(name):
    """Data N(mu, sig^2 I), loss |x0 - c|^2 / (2 tau^2): x0_hat is linear in x_t with slope
    k = m sig^2 / (m^2 sig^2 + s^2), so the guided score is score - scale k (x0_hat - c) / tau^2.
    One backward step of size lr from 0 gives delta = -lr (x0_hat - c) / tau^2."""
    sde = SDES[name]()
    mu, sig, c, tau = torch.tensor([0.5, -1.0], dtype=F64), 0.7, torch.tensor([1.0, 1.0], dtype=F64), 0.5
    gm = GaussianMixture([1.0], mu[None], torch.full((1, 2), sig ** 2, dtype=F64))
    loss = lambda x0: ((x0 - c) ** 2).sum(1) / (2 * tau ** 2)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(16, 2, generator=g, dtype=F64)
    t = 0.05 + 0.9 * torch.rand(16, generator=g, dtype=F64)
    m, s = (v[:, None] for v in sde.marginal_coeffs(t))
    score = gm.score_t(sde, x, t)
    x0 = (x + s ** 2 * score) / m
    k = m * sig ** 2 / (m ** 2 * sig ** 2 + s ** 2)
    got = universal_guidance(gm.score_fn(sde), loss, 0.8)(x, t)
    torch.testing.assert_close(got, score - 0.8 * k * (x0 - c) / tau ** 2, rtol=1e-9, atol=1e-9)
    got_b = universal_guidance(gm.score_fn(sde), loss, 0.8, backward_steps=1, backward_lr=0.1)(x, t)
    delta = -0.1 * (x0 - c) / tau ** 2
    torch.testing.assert_close(got_b, got + m / s ** 2 * delta, rtol=1e-9, atol=1e-9)


def test_inpaint_keeps_known_exactly_and_counts(ring):
    sde = VPSDE()
    xk = torch.tensor([[1.5, 123.0]], dtype=F64).expand(50, 2)
    mask = torch.tensor([True, False])
    x, info = inpaint(sde, ring.score_fn(sde), xk, mask, steps=20, corrector_steps=2, recurrence=2,
                      generator=torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 0], xk[:, 0]) and torch.isfinite(x).all() and (x[:, 1].abs() < 10).all()
    assert info.nfe == 20 * 2 * (1 + 2)
    x, info = inpaint(sde, ring.score_fn(sde), xk, mask, steps=20, denoise=True, generator=torch.Generator())
    assert torch.equal(x[:, 0], xk[:, 0]) and info.nfe == 20 * 2 + 1 and info.options["denoise"]
    with pytest.raises(ValueError, match="mask must be a bool"):
        inpaint(sde, ring.score_fn(sde), xk, torch.tensor([1, 0]), steps=5)
    with pytest.raises(ValueError, match="does not broadcast"):
        inpaint(sde, ring.score_fn(sde), xk, torch.tensor([True, False, True]), steps=5)
    with pytest.raises(ValueError, match="recurrence=2: sampler 'ode' chooses its own steps"):
        inpaint(sde, ring.score_fn(sde), xk, mask, sampler="ode", recurrence=2)
    with pytest.raises(ValueError, match="recurrence=2: sampler 'dpmpp_2m' is multistep"):
        inpaint(sde, ring.score_fn(sde), xk, mask, sampler="dpmpp_2m", recurrence=2)
    with pytest.raises(ValueError, match="NaN or inf"):
        inpaint(sde, ring.score_fn(sde), torch.full((2, 2), float("nan"), dtype=F64), mask)


@pytest.mark.parametrize("name", list(SDES))
def test_inpaint_is_exact_for_independent_coordinates(name):
    """For a diagonal Gaussian the unobserved coordinates are independent of the observed ones,
    so replacement samples the exact conditional: N(mu_u, var_u), checked within 4 SE."""
    sde = SDES[name]()
    mu, var = torch.tensor([0.3, -0.8, 1.2], dtype=F64), torch.tensor([0.5, 0.2, 1.0], dtype=F64)
    gm = GaussianMixture([1.0], mu[None], var[None])
    xk = torch.tensor([5.0, 0.0, 0.0], dtype=F64).expand(N, 3)
    mask = torch.tensor([True, False, False])
    x, _ = inpaint(sde, gm.score_fn(sde), xk, mask, sampler="pc", corrector="annealed_langevin", step_size=0.1,
                   steps=200, generator=torch.Generator().manual_seed(5))
    xu = x[:, 1:]
    assert ((xu.mean(0) - mu[1:]).abs() < 4 * (var[1:] / N).sqrt()).all(), xu.mean(0)
    assert ((xu.var(0) - var[1:]).abs() < 4 * var[1:] * math.sqrt(2 / N)).all(), xu.var(0)


def test_colorize_keeps_grey_and_samples_the_complement():
    """Isotropic Gaussian on 3 channels: the colour part is independent of the grey coordinate,
    so colorisation is exact: x - grey ~ N(P mu, sig^2 P) with P = I - 11^T/3 per pixel."""
    sde = VPSDE()
    mu = torch.tensor([0.6, -0.2, 0.1, 0.0, 0.5, -0.5, 0.3, 0.3, -0.6, 0.2, 0.0, 0.4], dtype=F64)  # [3, 2, 2]
    sig2 = 0.3
    gm = GaussianMixture([1.0], mu[None], torch.full((1, 12), sig2, dtype=F64))
    grey = torch.full((N, 1, 2, 2), 0.25, dtype=F64)
    x, info = colorize(sde, gm.score_fn(sde), grey, num_channels=3, steps=150, sampler="ancestral",
                       generator=torch.Generator().manual_seed(6))
    assert x.shape == (N, 3, 2, 2)
    torch.testing.assert_close(x.mean(1, keepdim=True), grey, rtol=0, atol=1e-12)
    dev = (x - x.mean(1, keepdim=True)).reshape(N, -1)
    m3 = mu.reshape(3, 2, 2)
    target = (m3 - m3.mean(0, keepdim=True)).reshape(-1)
    assert ((dev.mean(0) - target).abs() < 4 * math.sqrt(sig2 * 2 / 3 / N)).all()
    assert ((dev.var(0) - sig2 * 2 / 3).abs() < 4 * sig2 * 2 / 3 * math.sqrt(2 / N)).all()
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        colorize(sde, gm.score_fn(sde), torch.zeros(2, 3, 2, 2))


def test_inpaint_replacement_selects_the_component_the_observation_implies():
    """Two components that differ in both coordinates: observing x_0 = 2 makes component 2 certain
    (exact conditional weight 1 - 1e-9), so x_1 must sit near +2, not at the unconditional -2/+2 split.
    Without replacement during the loop half the samples land near -2. Replacement is approximate:
    with 100 reverse-diffusion steps 96.6% land near +2 (seed 7), hence the bound 0.9."""
    sde = VPSDE()
    gm = GaussianMixture([0.5, 0.5], [[-2.0, -2.0], [2.0, 2.0]], [[0.3, 0.3], [0.3, 0.3]])
    cond = gm.condition(torch.tensor([True, False]), torch.tensor([2.0]))
    assert cond.weights[1] > 1 - 1e-9
    xk = torch.tensor([2.0, 0.0], dtype=F64).expand(500, 2)
    x, _ = inpaint(sde, gm.score_fn(sde), xk, torch.tensor([True, False]), sampler="reverse_diffusion",
                   steps=100, generator=torch.Generator().manual_seed(7))
    assert (x[:, 1] > 0).double().mean() > 0.9


# ---- classifier-free guidance over an empty prompt, every sampler, on the exact oracle -----------

PROMPTED = GaussianMixture(torch.tensor([0.3, 0.3, 0.4]), torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]]),
                           torch.tensor([[[1.0, 0.5], [0.5, 0.6]], [[0.4, -0.2], [-0.2, 0.9]], [[0.7, 0.0], [0.0, 0.3]]]))
PER_PROMPT = 200
# Budgets of the CFG test (about 5 s for all samplers together); a sampler added later runs with steps=60
CFG_OPTIONS = {
    "euler_maruyama": dict(steps=60), "pc": dict(steps=30, corrector="annealed_langevin", step_size=0.1),
    "ancestral": dict(steps=60), "reverse_diffusion": dict(steps=60),
    "annealed_langevin": dict(steps=15, corrector_steps=10, step_size=0.5), "ddim": dict(steps=25),
    "euler_ancestral": dict(steps=80), "heun": dict(steps=12), "edm": dict(steps=18), "ode": dict(rtol=1e-2, atol=1e-2),
    "sde": dict(method="euler", steps=60), "dpm_solver": dict(steps=12), "dpmpp_2m": dict(steps=15),
    "dpmpp_3m": dict(steps=15), "dpmpp_2m_sde": dict(steps=40), "unipc": dict(steps=15)}


def prompted_scores(gm, sde, prompts):
    """(cond, uncond): the exact score of component prompts[b] for sample b (prompt k names component k),
    and the empty prompt's, the mixture score: the two halves of a prompt net under CFG."""
    comps = [gm.component(k).score_fn(sde) for k in range(gm.K)]
    uncond = gm.score_fn(sde)
    rows = torch.arange(prompts.shape[0])

    def cond(x, t):
        return torch.stack([c(x, t) for c in comps])[prompts, rows]
    return cond, uncond


def moments_match(x, mean, cov, n):
    """|mean error| < 4 SE + 0.05 per coordinate and |cov error| < 4 SE + 0.08 per entry (sample moments)."""
    m, c = x.mean(0), torch.cov(x.T)
    var = torch.diagonal(cov)
    se_c = ((var[:, None] * var[None, :] + cov ** 2) / n).sqrt()
    return bool(((m - mean).abs() < 4 * (var / n).sqrt() + 0.05).all() and ((c - cov).abs() < 4 * se_c + 0.08).all())


def cfg_prompted_run(sampler, w, guidance=classifier_free_guidance):
    sde = VESDE() if sampler == "annealed_langevin" else VPSDE()
    prompts = torch.arange(PROMPTED.K).repeat_interleave(PER_PROMPT)
    cond, uncond = prompted_scores(PROMPTED, sde, prompts)
    opts = CFG_OPTIONS.get(sampler, dict(steps=60))
    x, _ = solvers.sample(sde, guidance(cond, uncond, w), (prompts.numel(), 2), sampler,
                          generator=torch.Generator().manual_seed(4), dtype=F64, **opts)
    return x, prompts


def mixture_moments(gm):
    mu = (gm.weights[:, None] * gm.means).sum(0)
    second = (gm.weights[:, None, None] * (gm.covs + gm.means[:, :, None] * gm.means[:, None, :])).sum(0)
    return mu, second - mu[:, None] * mu[None, :]


def cfg_checks(sampler, guidance=classifier_free_guidance):
    """w = 0: each prompt's samples have its component's mean and covariance; w = -1 (the
    unconditional score): every prompt's samples have the mixture's."""
    x, prompts = cfg_prompted_run(sampler, 0.0, guidance)
    ok0 = [moments_match(x[prompts == k], PROMPTED.means[k], PROMPTED.covs[k], PER_PROMPT) for k in range(PROMPTED.K)]
    x, prompts = cfg_prompted_run(sampler, -1.0, guidance)
    mu, cov = mixture_moments(PROMPTED)
    ok1 = moments_match(x, mu, cov, x.shape[0])
    return ok0, ok1


@pytest.mark.parametrize("sampler", list(solvers.SAMPLERS))
def test_cfg_over_the_empty_prompt_samples_the_prompted_component(sampler):
    ok0, ok1 = cfg_checks(sampler)
    assert all(ok0), f"{sampler}: w = 0 samples off the prompted components {ok0}"
    assert ok1, f"{sampler}: w = -1 samples off the mixture"


def test_cfg_prompt_checks_can_fail():
    """The same checks reject guidance that swaps the roles (the empty prompt's score at w = 0), and the
    sign of w flipped ((1 - w) cond + w uncond: at w = -1 it is 2 cond - uncond, not the mixture)."""
    swapped = lambda cond, uncond, w: classifier_free_guidance(uncond, cond, w)
    flipped = lambda cond, uncond, w: (lambda x, t: (1 - w) * cond(x, t) + w * uncond(x, t))
    ok0, _ = cfg_checks("ddim", swapped)
    assert not any(ok0)
    ok0, ok1 = cfg_checks("ddim", flipped)
    assert all(ok0) and not ok1
