"""The public sampler registry, the shared options of sample(), entry validation and noise devices."""
import math

import pytest
import torch

from models.analytic import GaussianMixture
from sde_lib import VESDE, VPSDE
from solvers import SAMPLERS, NoiseSource, register_sampler, sample, sampler_table, unregister_sampler


@pytest.fixture(scope="module")
def gauss():
    """A 3-D Gaussian (one component): the probability-flow map x_T -> x_eps is linear and known."""
    lam = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64)
    mu = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64)
    return GaussianMixture(torch.ones(1), mu[None], lam[None]), mu, lam


def exact_flow(sde, x_T, eps, mu, lam):
    """PF-ODE solution at eps for Gaussian data N(mu, diag(lam)): each coordinate keeps its
    standard score, x_eps = m_e mu + sd_e / sd_T (x_T - m_T mu), sd^2 = m^2 lam + s^2."""
    m, s = sde.marginal_coeffs(torch.tensor([sde.T, eps], dtype=torch.float64))
    sd_T, sd_e = torch.sqrt(m[0] ** 2 * lam + s[0] ** 2), torch.sqrt(m[1] ** 2 * lam + s[1] ** 2)
    return m[1] * mu + sd_e / sd_T * (x_T - m[0] * mu)


def my_euler(sde, score, x, ts, noise, callback, *, gain):
    """Euler on the probability-flow ODE (a researcher's own sampler)."""
    rsde = sde.reverse(score, probability_flow=True)
    for i in range(len(ts) - 1):
        drift, _ = rsde.sde(x, ts[i].expand(x.shape[0]))
        x = x - gain * drift * (ts[i] - ts[i + 1])
        callback(i, x)
    return x


@pytest.fixture
def registered():
    spec = register_sampler("my_euler", my_euler, options={"gain": 1.0}, schedule="logsnr")
    yield spec
    unregister_sampler("my_euler")


def test_own_sampler_gets_the_shared_machinery(registered, gauss):
    gm, mu, lam = gauss
    sde = VPSDE()
    assert "my_euler" in SAMPLERS and "my_euler" in list(SAMPLERS) and "my_euler" in sampler_table()
    sf = gm.score_fn(sde)
    x_T = sde.prior_sampling((256, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, info = sample(sde, sf, None, "my_euler", x_T=x_T, steps=200, return_trajectory=True, denoise=False)
    assert info.nfe == 200 and info.steps == 200
    assert info.options["schedule"] == "logsnr" and info.options["gain"] == 1.0 and info.options["rho"] == 7.0
    assert info.trajectory.shape == (201, 256, 3) and info.times.shape == (201,)
    torch.testing.assert_close(info.trajectory[0], x_T)
    torch.testing.assert_close(info.trajectory[-1], x)
    assert info.times[0] == sde.T and abs(info.times[-1].item() - sde.eps) < 1e-12
    err = (x - exact_flow(sde, x_T, sde.eps, mu, lam)).abs().max().item()
    assert err < 0.05, err                 # Euler with 200 steps on the exact Gaussian flow
    with pytest.raises(ValueError, match="gain"):
        sample(sde, sf, (4, 3), "my_euler", steps=2, gian=2.0)
    with pytest.raises(ValueError, match="already registered"):
        register_sampler("my_euler", my_euler, options={})
    # the schedule option switches the grid
    _, info = sample(sde, sf, (4, 3), "my_euler", steps=5, schedule="uniform")
    assert info.options["schedule"] == "uniform"


def test_register_rejects_bad_declarations():
    with pytest.raises(ValueError, match="identifier"):
        register_sampler("my sampler", my_euler, options={})
    with pytest.raises(ValueError, match="shared options"):
        register_sampler("bad1", my_euler, options={"seeds": None})
    with pytest.raises(ValueError, match="added by the registry"):
        register_sampler("bad2", my_euler, options={"steps": 10})
    with pytest.raises(ValueError, match="schedule"):
        register_sampler("bad3", my_euler, options={}, schedule="cubic")
    with pytest.raises(ValueError, match="callable"):
        register_sampler("bad4", 3, options={})
    assert not any(n.startswith("bad") for n in SAMPLERS)


def test_sampler_that_skips_callback_is_caught(gauss):
    def lazy(sde, score, x, ts, noise, callback):
        return x
    register_sampler("lazy", lazy, options={})
    try:
        with pytest.raises(RuntimeError, match="callback"):
            sample(VPSDE(), gauss[0].score_fn(VPSDE()), (2, 3), "lazy", steps=3)
    finally:
        unregister_sampler("lazy")


def test_entry_validation(gauss):
    sde = VPSDE()
    sf = gauss[0].score_fn(sde)
    x_T = torch.zeros(4, 3)
    x_T[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"x_T has NaN/inf values in samples \[2\]"):
        sample(sde, sf, None, "ddim", x_T=x_T, steps=2)
    x_T[2, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN/inf"):
        sample(sde, sf, None, "ode", x_T=x_T)
    for bad in (torch.int64, torch.bool, "float32"):
        with pytest.raises(ValueError, match="floating"):
            sample(sde, sf, (4, 3), "ddim", steps=2, dtype=bad)
    with pytest.raises(ValueError, match="schedule"):
        sample(sde, sf, (4, 3), "ddim", steps=2, schedule="cubic")
    with pytest.raises(ValueError, match="rho"):
        sample(sde, sf, (4, 3), "edm", steps=2, rho=0)
    with pytest.raises(ValueError, match="eta"):
        sample(sde, sf, (4, 3), "ddim", steps=2, eta=1.5)
    with pytest.raises(ValueError, match="S_churn"):
        sample(sde, sf, (4, 3), "edm", steps=2, S_churn=-1.0)
    with pytest.raises(ValueError, match="langevin_norm"):
        sample(sde, sf, (4, 3), "pc", steps=2, langevin_norm="median")
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(sde, sf, (4, 3), "dpm_solver_9")


def test_noise_source_seeds_match_per_sample_generators_and_follow_device():
    """Per-sample seeds are exactly torch.Generator(seed) streams drawn in chunks (today's
    CPU results), and noise lands on the requested device with the requested dtype."""
    ns = NoiseSource((3, 5), torch.float64, None, seeds=[4, 5, 6])
    draws = torch.stack([ns.randn() for _ in range(3)], 1)       # [B, draw, D]
    for b, seed in enumerate([4, 5, 6]):
        g = torch.Generator().manual_seed(seed)
        want = torch.randn((ns.chunk, 5), generator=g, dtype=torch.float64)[:3]
        torch.testing.assert_close(draws[b], want, rtol=0, atol=0)
    assert draws.device == torch.empty(0).device
    ns = NoiseSource((3, 5), torch.float32, torch.device("cpu"), generator=torch.Generator().manual_seed(1))
    z = ns.randn()
    assert z.device.type == "cpu" and z.dtype == torch.float32
    torch.testing.assert_close(z, torch.randn((3, 5), generator=torch.Generator().manual_seed(1)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="generator"):
        NoiseSource((3, 5), torch.float32, None, generator=1)
    # another device than the generator's (the "meta" device stands in for CUDA on a CPU-only
    # machine): the draw is made on the generator's device and moved, seeds likewise
    for kw in ({"generator": torch.Generator().manual_seed(1)}, {"seeds": [1, 2, 3]}, {}):
        z = NoiseSource((3, 5), torch.float32, torch.device("meta"), **kw).randn()
        assert z.device.type == "meta" and z.shape == (3, 5) and z.dtype == torch.float32


def test_prior_draw_unchanged_by_registry():
    """The prior draw with a generator is the SDE's prior_sampling with that generator."""
    sde = VESDE()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x, _ = sample(sde, lambda x, t: torch.zeros_like(x), (6, 2), "ddim", steps=1, generator=g1)
    x0 = sde.prior_sampling((6, 2), generator=g2)
    # zero score: eps_hat = 0 and DDIM maps x_T to (m'/m) x_T = x_T for VE
    torch.testing.assert_close(x, x0, rtol=0, atol=0)
    assert math.isfinite(x.sum().item())


def test_all_builtins_registered():
    for name in ("euler_maruyama", "pc", "ancestral", "reverse_diffusion", "annealed_langevin", "ddim", "heun",
                 "edm", "euler_ancestral", "ode", "sde"):
        assert name in SAMPLERS
    assert SAMPLERS["edm"].schedule == "karras" and SAMPLERS["ode"].schedule is None
    with pytest.raises(TypeError):
        SAMPLERS["x"] = None              # read-only view: register_sampler is the only way in


@pytest.mark.parametrize("name", [n for n, s in SAMPLERS.items() if s.fixed_grid and n != "my_euler"])
def test_every_grid_sampler_honours_the_shared_options(name, gauss):
    """x_T, return_trajectory, progress, dtype, denoise (+1 NFE), generator reproducibility and
    the grid options, for every registered fixed-grid sampler (the fast samplers included)."""
    gm = gauss[0]
    sde = VESDE()
    sf = gm.score_fn(sde)
    x_T = sde.prior_sampling((6, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = lambda: torch.Generator().manual_seed(3)        # noqa: E731
    x, info = sample(sde, sf, None, name, x_T=x_T, steps=6, return_trajectory=True, progress=True, generator=g())
    assert x.dtype == torch.float64 and x.shape == (6, 3) and torch.isfinite(x).all()
    assert info.steps == 6 and info.trajectory.shape == (7, 6, 3) and info.times.shape == (7,)
    torch.testing.assert_close(info.trajectory[0], x_T)
    torch.testing.assert_close(info.trajectory[-1], x)
    assert info.options["schedule"] == SAMPLERS[name].schedule and info.options["steps"] == 6
    x2, info2 = sample(sde, sf, None, name, x_T=x_T, steps=6, denoise=True, generator=g())
    assert info2.nfe == info.nfe + 1
    x3, _ = sample(sde, sf, None, name, x_T=x_T, steps=6, generator=g())
    assert torch.equal(x3, x)
    x32, _ = sample(sde, sf, (6, 3), name, steps=6, dtype=torch.float32, generator=g(), schedule="uniform")
    assert x32.dtype == torch.float32 and torch.isfinite(x32).all()
