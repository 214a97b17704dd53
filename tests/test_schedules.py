"""log-SNR lambda(t) = log(m/s), its inverse, EDM's sigma = s/m, and the time-step schedules."""
import math

import pytest
import torch

from sde_lib import VESDE, VPSDE, subVPSDE
from sde_lib.base import SDE
from solvers.schedules import SCHEDULES, time_grid

SDES = {
    "vp": lambda: VPSDE(),
    "vp_beta0": lambda: VPSDE(beta_min=0.0, beta_max=12.0),
    "vp_cosine": lambda: VPSDE(schedule="cosine"),
    "subvp": lambda: subVPSDE(),
    "ve": lambda: VESDE(),
}


def _times(sde, dtype=torch.float64):
    """eps, T, a dense interior grid, and (cosine) both sides of the rate cap t*."""
    t = [sde.eps, 1e-5, 1e-4, 1e-3, sde.T] + torch.linspace(0.01, 0.99, 50).tolist()
    if hasattr(sde.schedule if hasattr(sde, "schedule") else None, "t_star"):
        ts = sde.schedule.t_star
        t += [ts - 1e-6, ts, ts + 1e-6]
    return torch.tensor(sorted(set(t)), dtype=dtype)


@pytest.mark.parametrize("name", list(SDES))
def test_log_snr_is_log_m_over_s_and_decreasing(name):
    sde = SDES[name]()
    t = _times(sde)
    m, s = sde.marginal_coeffs(t)
    lam = sde.log_snr(t)
    assert torch.allclose(lam, torch.log(m / s), rtol=1e-12, atol=1e-12)
    assert (lam[1:] < lam[:-1]).all()
    # EDM's sigma: s/m = exp(-lambda)
    assert torch.allclose(sde.edm_sigma(t), s / m, rtol=1e-12)
    assert torch.allclose(sde.edm_sigma(t), torch.exp(-lam), rtol=1e-12)


@pytest.mark.parametrize("name", list(SDES))
def test_log_snr_round_trips_float64(name):
    sde = SDES[name]()
    t = _times(sde)
    back = sde.t_from_log_snr(sde.log_snr(t))
    assert torch.allclose(back, t, rtol=1e-10, atol=0), (back - t).abs().max()
    # and lambda -> t -> lambda over the whole range, ends included
    lam_ends = sde.log_snr(torch.tensor([sde.T, 1e-6], dtype=torch.float64))
    lam = torch.linspace(lam_ends[0].item(), lam_ends[1].item(), 101, dtype=torch.float64)
    assert torch.allclose(sde.log_snr(sde.t_from_log_snr(lam)), lam, rtol=1e-10, atol=1e-10)
    # EDM sigma round trip
    assert torch.allclose(sde.t_from_edm_sigma(sde.edm_sigma(t)), t, rtol=1e-10, atol=0)
    # exact ends
    assert sde.t_from_log_snr(sde.log_snr(torch.tensor([sde.T], dtype=torch.float64))).item() == pytest.approx(sde.T, rel=1e-14)


@pytest.mark.parametrize("name", list(SDES))
def test_closed_form_inverse_agrees_with_bisection(name):
    """The closed forms against the base class's generic guarded bisection on the same lambdas."""
    sde = SDES[name]()
    lam = sde.log_snr(_times(sde))
    closed = sde.t_from_log_snr(lam)
    generic = SDE._t_from_log_snr(sde, lam)
    assert torch.allclose(closed, generic, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", list(SDES))
def test_float32_keeps_relative_precision_near_eps(name):
    """float32 forward and inverse stay within a few ulps of the float64 maps of the same inputs,
    at t = eps and T included (no cancellation near t = 0)."""
    sde = SDES[name]()
    t32 = _times(sde, torch.float32)
    lam32 = sde.log_snr(t32)
    assert lam32.dtype == torch.float32
    lam_ref = sde.log_snr(t32.double())
    assert torch.allclose(lam32.double(), lam_ref, rtol=2e-6, atol=2e-6)
    back32 = sde.t_from_log_snr(lam32)
    assert back32.dtype == torch.float32
    back_ref = sde._t_from_log_snr(lam32.double())       # the exact inverse of the float32 lambdas
    assert torch.allclose(back32.double(), back_ref, rtol=2e-6, atol=0)
    # the round trip is as good as float32 lambda allows: |dt| <= ulp(lambda) / |dlambda/dt| (+ ulp(t))
    t64 = t32.double().requires_grad_(True)
    dlam = torch.autograd.grad(sde.log_snr(t64).sum(), t64)[0].abs()
    ulp = torch.finfo(torch.float32).eps
    bound = 4 * ulp * ((lam_ref.abs() + 1) / dlam + t32.double())
    assert ((back32.double() - t32.double()).abs() <= bound).all()


@pytest.mark.parametrize("name", ["vp", "vp_cosine", "subvp"])
def test_t_zero_is_infinite_log_snr(name):
    sde = SDES[name]()
    lam = sde.log_snr(torch.tensor([0.0], dtype=torch.float64))
    assert lam.item() == math.inf
    assert sde.t_from_log_snr(lam).item() == 0.0


def test_closed_forms_by_hand():
    """A few values worked out independently of the code's formulas."""
    vp = VPSDE(beta_min=0.1, beta_max=20.0)
    t = 0.5
    B = 0.1 * t + 0.5 * t * t * 19.9
    m = math.exp(-B / 2)
    assert vp.log_snr(torch.tensor([t], dtype=torch.float64)).item() == pytest.approx(math.log(m / math.sqrt(1 - m * m)), rel=1e-13)
    sub = subVPSDE()
    assert sub.log_snr(torch.tensor([t], dtype=torch.float64)).item() == pytest.approx(math.log(m / (1 - m * m)), rel=1e-13)
    ve = VESDE(sigma_min=0.01, sigma_max=50.0)
    assert ve.log_snr(torch.tensor([t], dtype=torch.float64)).item() == pytest.approx(-math.log(0.01 * 5000 ** t), rel=1e-13)
    assert ve.edm_sigma(torch.tensor([t], dtype=torch.float64)).item() == pytest.approx(0.01 * 5000 ** t, rel=1e-13)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_inverse_errors(name):
    sde = SDES[name]()
    lam_T = sde.log_snr(torch.tensor([sde.T], dtype=torch.float64)).item()
    with pytest.raises(ValueError, match="log_snr must lie in"):
        sde.t_from_log_snr(torch.tensor([lam_T - 0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        sde.t_from_log_snr(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="float tensor"):
        sde.t_from_log_snr(1.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        sde.t_from_edm_sigma(torch.tensor([0.0]))
    if name == "ve":                              # lambda(0) = -log sigma_min is finite for VE
        with pytest.raises(ValueError, match="log_snr must lie in"):
            sde.t_from_log_snr(torch.tensor([-math.log(sde.sigma_min) + 0.1], dtype=torch.float64))
    # the generic bisection reports out-of-range values too
    with pytest.raises(ValueError, match="log_snr must lie in"):
        SDE.t_from_log_snr(_Bisect(sde), torch.tensor([lam_T - 0.1], dtype=torch.float64))


class _Bisect:
    """Wrap an SDE so that `t_from_log_snr` takes the base class's generic bisection."""

    def __init__(self, sde):
        self.sde, self.T = sde, sde.T

    def log_snr(self, t):
        return self.sde.log_snr(t)

    def _t_from_log_snr(self, lam):
        return SDE._t_from_log_snr(self, lam)


# ---- time_grid ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_time_grid_shape_ends_monotone(name, schedule):
    sde = SDES[name]()
    for dtype in (torch.float32, torch.float64):
        ts = time_grid(sde, 17, schedule, eps=sde.eps, dtype=dtype)
        assert ts.shape == (18,) and ts.dtype == dtype
        assert ts[0].item() == pytest.approx(sde.T, rel=0) and ts[-1].item() == torch.tensor(sde.eps, dtype=dtype).item()
        assert (ts[1:] < ts[:-1]).all()
    assert time_grid(sde, 1, schedule).tolist() == pytest.approx([sde.T, sde.eps])


@pytest.mark.parametrize("name", list(SDES))
def test_time_grid_is_uniform_in_its_variable(name):
    sde = SDES[name]()
    n, eps = 12, 2e-3
    def equally_spaced(v):
        d = v[1:] - v[:-1]
        return torch.allclose(d, d.mean().expand_as(d), rtol=1e-8, atol=1e-12)
    ts = time_grid(sde, n, "uniform", eps=eps, dtype=torch.float64)
    assert equally_spaced(ts)
    ts = time_grid(sde, n, "quadratic", eps=eps, dtype=torch.float64)
    assert equally_spaced(ts.sqrt()) and not equally_spaced(ts)
    ts = time_grid(sde, n, "logsnr", eps=eps, dtype=torch.float64)
    assert equally_spaced(sde.log_snr(ts)) and not equally_spaced(ts) or name == "ve"
    assert equally_spaced(sde.log_snr(ts))
    for rho in (1.0, 7.0):
        ts = time_grid(sde, n, "karras", eps=eps, rho=rho, dtype=torch.float64)
        assert equally_spaced(sde.edm_sigma(ts) ** (1 / rho))
    # EDM's formula written out for VE, where sigma(t) is the VE sigma itself
    if name == "ve":
        smax, smin = sde.sigma_max ** (1 / 7), (sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** eps) ** (1 / 7)
        want = [(smax + i / n * (smin - smax)) ** 7 for i in range(n + 1)]
        got = sde.sigma(time_grid(sde, n, "karras", eps=eps, dtype=torch.float64))
        assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-10)


def test_time_grid_errors():
    sde = VPSDE()
    with pytest.raises(ValueError, match="unknown schedule 'cos'"):
        time_grid(sde, 10, "cos")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        time_grid(sde, 0)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        time_grid(sde, 2.0)
    with pytest.raises(ValueError, match="eps must lie in"):
        time_grid(sde, 10, eps=1.5)
    with pytest.raises(ValueError, match="rho must be"):
        time_grid(sde, 10, "karras", rho=0.0)
    with pytest.raises(ValueError, match="not strictly decreasing"):
        time_grid(sde, 4000, "uniform", dtype=torch.float16)
