"""Cold diffusion: the closed-form identities of Algorithms 1 and 2 (Bansal et al. 2022) and the
degradations' closed forms."""
import math

import pytest
import torch

from models.analytic import make_mixture
from sde_lib import DEGRADATIONS, VPSDE, make_degradation
from sde_lib.degradations import _dct_matrix
from solvers import DegradedPrior, cold_sample, cold_time_grid, hot_pair, sample
from solvers.schedules import time_grid

SHAPE = (1, 8, 8)


def _digits_like(n, gen):
    """Smooth-ish images in [-1, 1] (a blurred random field), float64."""
    x = torch.randn(n, *SHAPE, generator=gen, dtype=torch.float64)
    return torch.tanh(make_degradation("blur", SHAPE, sigma_max=1.0)(x, torch.ones(n, dtype=torch.float64)) * 2)


def _random_net(gen):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, 1, 3, padding=1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    net = net.double()
    return lambda x, t: net(x) + t[:, None, None, None]


@pytest.mark.parametrize("which", ["random_net", "zero", "constant", "identity"])
def test_improved_exact_for_linear_degradation_with_any_restoration(which, gen):
    e = torch.randn(4, *SHAPE, generator=gen, dtype=torch.float64)
    x0 = torch.randn(4, *SHAPE, generator=gen, dtype=torch.float64)

    def degrade(x, s):
        return x + s[:, None, None, None] * e
    restore = {"random_net": _random_net(gen), "zero": lambda x, t: torch.zeros_like(x),
               "constant": lambda x, t: torch.full_like(x, 3.0), "identity": lambda x, t: x}[which]
    ts = cold_time_grid(10)
    xT = degrade(x0, torch.ones(4, dtype=torch.float64))
    x2, info = cold_sample(degrade, restore, xT, ts, "improved")
    x1, _ = cold_sample(degrade, restore, xT, ts, "naive")
    assert (x2 - x0).abs().max() < 1e-10
    assert (x1 - x0).abs().max() > 1e-2          # Algorithm 1 returns the last restoration: off
    assert info.nfe == 10 and info.steps == 10 and info.extra["degrade_calls"] == 20


def test_improved_is_ddim_on_the_exact_mixture_score(gen):
    sde = VPSDE()
    gm = make_mixture("random", D=3, K=3, generator=torch.Generator().manual_seed(1))
    score_fn = gm.score_fn(sde)
    xT = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    ts = time_grid(sde, 25, schedule="uniform", eps=sde.eps, dtype=torch.float64)
    ref, info_ref = sample(sde, score_fn, None, "ddim", steps=25, x_T=xT, eta=0.0)
    degrade, restore = hot_pair(sde, score_fn)
    x, info = cold_sample(degrade, restore, xT, ts, "improved")
    assert (x - ref).abs().max() < 1e-10
    assert info.nfe == info_ref.nfe == 25
    assert (ref - xT).abs().max() > 0.1


def _degradations():
    sde = VPSDE()
    out = []
    for name in DEGRADATIONS:
        if name == "gaussian":
            continue
        out.append((name, make_degradation(name, SHAPE)))
    out.append(("mask_random", make_degradation("mask", SHAPE, order="random", fraction_max=0.7)))
    out.append(("blur_sqrt", make_degradation("blur", SHAPE, sigma_max=4.0, power=0.5)))
    out.append(("pixelate_2", make_degradation("pixelate", SHAPE, resolutions=(8, 2))))
    return out, sde


@pytest.mark.parametrize("algorithm", ["improved", "naive"])
def test_true_x0_restoration_is_exact_for_every_degradation(algorithm, gen):
    degs, sde = _degradations()
    x0 = _digits_like(6, gen)
    z = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    degs.append(("gaussian", make_degradation("gaussian", SHAPE, sde=sde).with_noise(z)))
    assert {n for n, _ in degs} >= set(DEGRADATIONS)
    for name, D in degs:
        xT = D(x0, torch.full((6,), D.T, dtype=torch.float64))
        x, _ = cold_sample(D, lambda x, t: x0, xT, cold_time_grid(7, D.T), algorithm)
        assert (x - x0).abs().max() < 1e-10, name
        assert (xT - x0).abs().max() > 1e-2, name          # the degradation did something


def test_improved_beats_naive_for_perturbed_restoration_on_blur():
    D = make_degradation("blur", SHAPE, sigma_max=3.0)
    errs = []
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        x0 = _digits_like(16, g)
        xT = D(x0, torch.ones(16, dtype=torch.float64))

        def restore(x, t, g=g, x0=x0):
            return x0 + 0.1 * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
        e = [((cold_sample(D, restore, xT, cold_time_grid(20), a)[0] - x0) ** 2).mean().sqrt().item()
             for a in ("naive", "improved")]
        errs.append(e)
    naive, improved = torch.tensor(errs).T
    assert (improved < naive).all(), errs
    assert improved.mean() < 0.5 * naive.mean()


def test_blur_is_the_heat_semigroup_cumulative_in_sigma_squared(gen):
    n = 8
    lap = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        lap[i, i] = -2
        if i:
            lap[i, i - 1] = 1
        if i < n - 1:
            lap[i, i + 1] = 1
    lap[0, 0] = lap[-1, -1] = -1                               # reflecting borders
    D = make_degradation("blur", SHAPE, sigma_max=2.0, power=1.0)
    x = torch.randn(3, *SHAPE, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    for i, sig in enumerate(D.schedule(t).tolist()):
        E = torch.linalg.matrix_exp(0.5 * sig ** 2 * lap)
        assert torch.allclose(D(x, t)[i, 0], E @ x[i, 0] @ E.T, atol=1e-12)
    # blurring x_s by sigma' gives x_t when sigma(t)^2 = sigma(s)^2 + sigma'^2
    s, tt = torch.full((3,), 0.4, dtype=torch.float64), torch.full((3,), 0.9, dtype=torch.float64)
    extra = (D.schedule(tt) ** 2 - D.schedule(s) ** 2).sqrt()
    assert torch.allclose(D.blur(D(x, s), extra), D(x, tt), atol=1e-12)
    mean = D.blur(x, torch.full((3,), 1e3, dtype=torch.float64))
    assert torch.allclose(mean, x.mean(dim=(2, 3), keepdim=True).expand_as(x), atol=1e-12)
    assert torch.allclose(_dct_matrix(5) @ _dct_matrix(5).T, torch.eye(5, dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28), (1, 8, 12)])
def test_full_blur_is_the_per_channel_mean_and_no_less_blur_is(shape, gen):
    """sigma_max = inf: D(x0, T) is the per-channel mean to float32 rounding (every other DCT gain
    <= 2^-24), and sigma_max is the smallest such std: at 0.9 of it the slowest mode is still visible."""
    D = make_degradation("blur", shape, sigma_max=math.inf)
    assert D.full and D.sigma_max == pytest.approx({8: 14.79, 12: 22.10, 28: 51.44}[max(shape[1:])], abs=0.01)
    x = torch.randn(4, *shape, generator=gen, dtype=torch.float64)
    T = torch.full((4,), D.T, dtype=torch.float64)
    dev = D(x, T) - x.mean(dim=(2, 3), keepdim=True)
    spread = (x - x.mean(dim=(2, 3), keepdim=True)).abs().amax()
    assert dev.abs().max() <= 2.0 ** -24 * spread * math.sqrt(shape[1] * shape[2])
    # the slowest mode (k = 1 along the longer side) keeps exactly 2^-24 at sigma_max, 2^-24 ^ 0.81 at 0.9 of it
    C, H, W = shape
    along_w = W >= H
    n = W if along_w else H
    mode = torch.cos(math.pi * (2 * torch.arange(n, dtype=torch.float64) + 1) / (2 * n))
    slow = (mode[None, :] if along_w else mode[:, None]).expand(H, W).expand(1, C, H, W)
    for frac, gain in ((1.0, 2.0 ** -24), (0.9, 2.0 ** (-24 * 0.81))):
        out = D.blur(slow, torch.full((1,), frac * D.sigma_max, dtype=torch.float64))
        assert (out.norm() / slow.norm()).item() == pytest.approx(gain, rel=1e-6)
    # halfway, it is a blur of std sigma_max / 2, not yet the mean
    assert torch.allclose(D(x, T / 2), D.blur(x, T * D.sigma_max / 2), atol=1e-14)
    assert "full=True" in repr(D) and not make_degradation("blur", shape).full


def test_mask_pixelate_snow_closed_forms(gen):
    x = torch.randn(2, *SHAPE, generator=gen, dtype=torch.float64)
    M = make_degradation("mask", SHAPE, order="random", fill=0.5)
    t = torch.tensor([0.3, 0.71], dtype=torch.float64)
    m = M.mask(t, x)
    assert torch.allclose(m.sum(dim=(1, 2, 3)), 64 * t)            # masked fraction = f(t) exactly
    assert torch.allclose(M(x, t), (1 - m) * x + m * 0.5)
    C = make_degradation("mask", SHAPE, order="centre")
    quarter = C.mask(torch.full((1,), 0.25, dtype=torch.float64), x)[0, 0]
    assert quarter[2:6, 2:6].eq(1).all() and quarter.sum() == 16      # the centre 4x4 square
    P = make_degradation("pixelate", SHAPE)
    assert P.resolutions == (8, 4, 2, 1)
    third = P(x, torch.full((2,), 2 / 3, dtype=torch.float64))       # level 2: 2x2 resolution
    block = x[:, :, :4, :4].mean(dim=(2, 3))
    assert torch.allclose(third[:, :, 0, 0], block) and torch.allclose(third[:, :, 3, 3], block)
    S = make_degradation("snow", SHAPE, amount=0.8, seed=3)
    one = torch.ones(2, dtype=torch.float64)
    w = 0.8 * S.pattern
    assert torch.allclose(S(x, one), (1 - w) * x + w)
    assert (S.pattern > 0).any() and (S.pattern == 0).any()


def test_bad_degradation_input_names_the_value():
    with pytest.raises(ValueError, match=r"unknown degradation 'fog'.*blur"):
        make_degradation("fog", SHAPE)
    with pytest.raises(ValueError, match=r"sigma_max.*-1"):
        make_degradation("blur", SHAPE, sigma_max=-1.0)
    with pytest.raises(ValueError, match=r"fraction_max.*\[0.0, 1.0\].*1.5"):
        make_degradation("mask", SHAPE, fraction_max=1.5)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['radius'\]"):
        make_degradation("blur", SHAPE, radius=2)
    with pytest.raises(ValueError, match=r"resolutions"):
        make_degradation("pixelate", SHAPE, resolutions=(8, 3))
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\]"):
        make_degradation("blur", SHAPE)(torch.zeros(2, *SHAPE), torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"unknown cold algorithm 'fast'"):
        cold_sample(lambda x, t: x, lambda x, t: x, torch.zeros(2, 3), [1.0, 0.0], "fast")
    with pytest.raises(ValueError, match=r"strictly decreasing"):
        cold_sample(lambda x, t: x, lambda x, t: x, torch.zeros(2, 3), [0.0, 1.0])


def test_cold_sample_trajectory_and_prior_seeds(gen):
    D = make_degradation("blur", SHAPE)
    x0 = _digits_like(40, gen)
    xT = D(x0, torch.ones(40, dtype=torch.float64))
    x, info = cold_sample(D, lambda x, t: x0, xT, cold_time_grid(5), return_trajectory=True)
    assert info.trajectory.shape == (6, 40, *SHAPE) and info.extra["x0_trajectory"].shape == (5, 40, *SHAPE)
    assert torch.equal(info.trajectory[-1], x)
    prior = DegradedPrior.fit(xT, components=2, noise=0.01, seed=0)
    a = prior.sample([5, 6, 7], dtype=torch.float64)
    b = prior.sample([7], dtype=torch.float64)
    assert torch.equal(a[2], b[0]) and not torch.equal(a[0], a[1])
    draws = prior.sample(range(2000), dtype=torch.float64).reshape(2000, -1)
    # the mixture's mean is the data's mean (EM preserves it), within 4 standard errors
    se = draws.std(0) / math.sqrt(2000)
    assert ((draws.mean(0) - xT.reshape(40, -1).mean(0)).abs() < 4 * se + 1e-3).all()
