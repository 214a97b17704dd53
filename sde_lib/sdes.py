"""VP (linear and cosine schedules), sub-VP and VE SDEs.

Conventions (see docs/ARCHITECTURE.md):

| SDE    | f(x,t)     | g(t)                         | m(t)                 | s(t)        | prior        |
|--------|------------|------------------------------|----------------------|-------------|--------------|
| VP     | -1/2 b(t)x | sqrt(b(t))                   | exp(-1/2 int_0^t b)  | sqrt(1-m^2) | N(0, I)      |
| sub-VP | -1/2 b(t)x | sqrt(b(t)(1-exp(-2 int b)))  | same as VP           | 1 - m^2     | N(0, I)      |
| VE     | 0          | sigma(t) sqrt(2 ln(smax/smin)) | 1                  | sigma(t)    | N(0, smax^2 I)|

with b(t) = beta_min + t (beta_max - beta_min) and sigma(t) = smin (smax/smin)^t.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .base import SDE, Tensor, check_positive
from .registry import register_sde


def _check_betas(beta_min, beta_max):
    check_positive("beta_min", beta_min, allow_zero=True)
    check_positive("beta_max", beta_max)
    if beta_min >= beta_max:
        raise ValueError(f"beta_min must be < beta_max, got beta_min={beta_min!r}, beta_max={beta_max!r}")


class _BetaSchedule:
    """A noise-rate schedule beta(t) >= 0 with B(t) = int_0^t beta(s) ds, as torch functions of t."""

    def beta(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def integral(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def inverse_integral(self, B: Tensor) -> Tensor:
        """t with integral(t) = B (B >= 0)."""
        raise NotImplementedError


class LinearSchedule(_BetaSchedule):
    """beta(t) = beta_min + t (beta_max - beta_min); B(t) = t beta_min + t^2 (beta_max - beta_min) / 2."""

    def __init__(self, beta_min: float, beta_max: float):
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t):
        return t * self.beta_min + 0.5 * t ** 2 * (self.beta_max - self.beta_min)

    def inverse_integral(self, B):
        """The positive root of d/2 t^2 + beta_min t - B = 0 (d = beta_max - beta_min), written as
        t = 2B / (beta_min + sqrt(beta_min^2 + 2 d B)) so that small B loses no precision."""
        denom = self.beta_min + torch.sqrt(self.beta_min ** 2 + 2 * (self.beta_max - self.beta_min) * B)
        return torch.where(B > 0, 2 * B / torch.where(B > 0, denom, torch.ones_like(denom)), torch.zeros_like(B))


class CosineSchedule(_BetaSchedule):
    """Cosine schedule of Nichol & Dhariwal (2021) in continuous time, with beta capped.

    alpha_bar(t) = cos^2(phi(t)) / cos^2(phi(0)),  phi(t) = (t + s)/(1 + s) * pi/2, so

        beta(t) = -d ln alpha_bar / dt = pi / (1 + s) * tan(phi(t)),
        B(t)    = -ln alpha_bar(t) = 2 ln cos(phi(0)) - 2 ln cos(phi(t)).

    beta(t) diverges as t -> 1 (alpha_bar(1) = 0): the reverse SDE and the
    score are then undefined. As the discrete schedule clips beta_t at 0.999,
    we cap the continuous rate at `beta_max`: beta(t) = min(beta_cos(t), beta_max).
    With t* the time where beta_cos(t*) = beta_max, the integral is exact for
    the capped rate: B(t) = B_cos(t) for t <= t*, and
    B(t*) + beta_max (t - t*) afterwards. Every quantity stays finite on [0, T]
    and the SDE stays self-consistent (the marginals are those of the capped
    rate). With s = 0.008 and beta_max = 20, t* ~ 0.901 and m(1) ~ 0.057.
    """

    def __init__(self, s: float = 0.008, beta_max: float = 20.0):
        check_positive("cosine_s", s)
        check_positive("beta_max", beta_max)
        self.s, self.beta_max = float(s), float(beta_max)
        self._scale = math.pi / (1 + self.s)
        self._log_cos0 = math.log(math.cos(self._phi_float(0.0)))
        self._tan0 = math.tan(self._phi_float(0.0))
        # tan(phi(t*)) = beta_max / scale  =>  phi(t*) = atan(...)
        phi_star = math.atan(self.beta_max / self._scale)
        self.t_star = phi_star * 2 / math.pi * (1 + self.s) - self.s
        if self.t_star <= 0:
            raise ValueError(f"beta_max={beta_max!r} is below the cosine schedule's rate at t=0; "
                             f"expected beta_max > {self._scale * math.tan(self._phi_float(0.0)):.4g}")
        self._B_star = 2 * self._log_cos0 - 2 * math.log(math.cos(phi_star))

    def _phi_float(self, t: float) -> float:
        return (t + self.s) / (1 + self.s) * math.pi / 2

    def _phi(self, t):
        return (t + self.s) / (1 + self.s) * (math.pi / 2)

    def beta(self, t):
        tc = torch.clamp(t, max=self.t_star)
        b = self._scale * torch.tan(self._phi(tc))
        return torch.where(t <= self.t_star, b, torch.full_like(b, self.beta_max))

    def integral(self, t):
        tc = torch.clamp(t, max=self.t_star)
        # B = -2 ln(cos(phi0 + d) / cos(phi0)) with d = phi(t) - phi0, written as
        # -2 log1p(-2 sin^2(d/2) - tan(phi0) sin(d)) so that small t keeps full
        # relative precision (matters in float32 near eps).
        d = tc / (1 + self.s) * (math.pi / 2)
        B_cos = -2 * torch.log1p(-2 * torch.sin(d / 2) ** 2 - self._tan0 * torch.sin(d))
        return torch.where(t <= self.t_star, B_cos, self._B_star + self.beta_max * (t - self.t_star))

    def inverse_integral(self, B):
        """t with B(t) = B, in closed form on both pieces of the capped rate.

        Below B(t*): cos(phi0 + d) = c cos(phi0) with c = exp(-B/2) and d = phi(t) - phi0.
        With tau = tan(d/2) this is (1 + c) tau^2 + 2 tan(phi0) tau - (1 - c) = 0, whose
        positive root tau = (1 - c) / (tan(phi0) + sqrt(tan(phi0)^2 + (1 + c)(1 - c)))
        keeps full relative precision as B -> 0 (1 - c = -expm1(-B/2)); then
        t = 2 atan(tau) (1 + s) 2/pi. Above B(t*): t = t* + (B - B(t*)) / beta_max.
        """
        one_minus_c = -torch.expm1(-0.5 * B)
        one_plus_c = 2.0 - one_minus_c
        tau = one_minus_c / (self._tan0 + torch.sqrt(self._tan0 ** 2 + one_plus_c * one_minus_c))
        t_cos = 2 * torch.atan(tau) * (1 + self.s) * (2 / math.pi)
        return torch.where(B <= self._B_star, t_cos, self.t_star + (B - self._B_star) / self.beta_max)


@register_sde("vpsde", aliases=("vp",))
class VPSDE(SDE):
    """Variance-preserving SDE (the continuous limit of DDPM).

    dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw, with m(t) = exp(-B(t)/2) and
    s(t) = sqrt(1 - m(t)^2), B(t) = int_0^t beta. schedule="linear" uses
    beta(t) = beta_min + t (beta_max - beta_min); schedule="cosine" uses the
    cosine schedule (see `CosineSchedule`), where beta_max caps the rate near
    t = 1 and beta_min is not used.

    Networks predict the noise z (DDPM) from the label t by default; discrete training is DDPM's.
    """
    prediction, label, discrete_objective = "eps", "t", "ddpm"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000,
                 schedule: str = "linear", cosine_s: float = 0.008, eps: float = 1e-3, T: float = 1.0):
        super().__init__(N=N, T=T, eps=eps)
        _check_betas(beta_min, beta_max)
        if schedule == "linear":
            self.schedule = LinearSchedule(beta_min, beta_max)
        elif schedule == "cosine":
            self.schedule = CosineSchedule(cosine_s, beta_max)
        else:
            raise ValueError(f"unknown schedule {schedule!r}; expected one of ['linear', 'cosine']")
        self.schedule_name = schedule
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t: Tensor) -> Tensor:
        return self.schedule.beta(t)

    def drift_coeff(self, t):
        return -0.5 * self.beta(t)

    def diffusion_coeff(self, t):
        return torch.sqrt(self.beta(t))

    def marginal_coeffs(self, t):
        log_m = -0.5 * self.schedule.integral(t)
        # s^2 = 1 - m^2 = -expm1(2 log m): accurate for small t.
        return torch.exp(log_m), torch.sqrt(-torch.expm1(2 * log_m))

    def prior_std(self):
        return 1.0

    def log_snr(self, t):
        """lambda = log m - log s = -1/2 log(exp(B) - 1) = -1/2 log(expm1(B(t)))."""
        return -0.5 * torch.log(torch.expm1(self.schedule.integral(t)))

    def _t_from_log_snr(self, lam):
        """B = log(1 + exp(-2 lambda)) = softplus(-2 lambda), then t = B^{-1}(B) in closed form."""
        return self.schedule.inverse_integral(torch.nn.functional.softplus(-2 * lam))

    def discrete_beta(self, t: Tensor, dt: Optional[float] = None) -> Tensor:
        """beta_i of the DDPM chain at time t, `[B]`: 1 - exp(-int_{t-dt}^t beta).

        Song et al. 2021 (App. B) take beta_i = beta(t_i) / N; ours is the same
        to first order in dt = T/N, keeps the chain's marginals consistent with
        the SDE's for any schedule, and stays in (0, 1) on coarse grids.
        """
        dt = self.T / self.N if dt is None else dt
        B_hi = self.schedule.integral(t)
        B_lo = self.schedule.integral(torch.clamp(t - dt, min=0.0))
        return -torch.expm1(-(B_hi - B_lo))

    def discretize(self, x, t, dt=None):
        """DDPM chain: x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z, so
        f = (sqrt(1 - beta_i) - 1) x and G = sqrt(beta_i)."""
        self._check_t(t, x)
        beta_i = self.discrete_beta(t, dt)
        f = (torch.sqrt(1.0 - beta_i) - 1.0).reshape(-1, *([1] * (x.dim() - 1))) * x
        return f, torch.sqrt(beta_i)

    def ancestral_coeffs(self, t, dt):
        """(a, b^2, posterior variance) of the one-step kernel (see `SDE.ancestral_coeffs`), with
        b^2 = beta_i = 1 - a^2 computed without cancellation (`discrete_beta`)."""
        m, s = self.marginal_coeffs(t)
        m_p, s_p = self.marginal_coeffs(t - dt)
        b2 = self.discrete_beta(t, dt)
        return m / m_p, b2, b2 * (s_p / s) ** 2

    def ancestral_variance(self, b2, post):
        """DDPM's ancestral noise variance beta_i (Ho et al. 2020, sigma_t^2 = beta_t)."""
        return b2

    def discrete_log_snrs(self, dtype=torch.float64):
        """lambda_k of the N-step chain, `[N]`. Linear schedule: DDPM's (Ho et al. 2020; Song et al.
        2021's discrete VP), beta_k = linspace(beta_min/N, beta_max/N, N), alpha_bar_k =
        prod_{j<=k} (1 - beta_j), lambda_k = 1/2 log(alpha_bar_k / (1 - alpha_bar_k)); beta 0.1..20
        with N = 1000 is DDPM's 1e-4..0.02. Cosine: the SDE's own lambda((k + 1) T / N) (the
        improved-DDPM chain, alpha_bar_k = alpha_bar((k + 1) / N), with this SDE's cap)."""
        if self.schedule_name == "cosine":
            k = torch.arange(1, self.N + 1, dtype=torch.float64)
            return self.log_snr(k * (self.T / self.N)).to(dtype)
        betas = torch.linspace(self.beta_min / self.N, self.beta_max / self.N, self.N, dtype=torch.float64)
        log_abar = torch.cumsum(torch.log1p(-betas), 0)
        return (0.5 * (log_abar - torch.log(-torch.expm1(log_abar)))).to(dtype)

    def __repr__(self):
        return (f"VPSDE(beta_min={self.beta_min}, beta_max={self.beta_max}, N={self.N}, "
                f"schedule={self.schedule_name!r}, eps={self.eps})")


@register_sde("subvpsde", aliases=("subvp", "sub-vp", "sub_vp"))
class subVPSDE(SDE):
    """Sub-VP SDE: VP drift with g(t)^2 = beta(t) (1 - exp(-2 B(t))).

    Its marginal std s(t) = 1 - m(t)^2 is below the VP one for every t > 0.
    The discretisation is the default Euler-Maruyama chain; it has no discrete-time objective.
    Networks predict the noise from the label t by default (as for VP).
    """
    prediction, label = "eps", "t"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000,
                 eps: float = 1e-3, T: float = 1.0):
        super().__init__(N=N, T=T, eps=eps)
        _check_betas(beta_min, beta_max)
        self.schedule = LinearSchedule(beta_min, beta_max)
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t):
        return self.schedule.beta(t)

    def drift_coeff(self, t):
        return -0.5 * self.beta(t)

    def diffusion_coeff(self, t):
        B = self.schedule.integral(t)
        return torch.sqrt(self.beta(t) * -torch.expm1(-2.0 * B))

    def marginal_coeffs(self, t):
        log_m = -0.5 * self.schedule.integral(t)
        return torch.exp(log_m), -torch.expm1(2 * log_m)

    def prior_std(self):
        return 1.0

    def log_snr(self, t):
        """lambda = log m - log(1 - m^2) = -B/2 - log(-expm1(-B))."""
        B = self.schedule.integral(t)
        return -0.5 * B - torch.log(-torch.expm1(-B))

    def _t_from_log_snr(self, lam):
        """m / (1 - m^2) = e^lambda is a quadratic in m; its root gives 1/m = q + sqrt(1 + q^2)
        with q = e^{-lambda} / 2, i.e. B = -2 log m = 2 asinh(e^{-lambda} / 2)."""
        return self.schedule.inverse_integral(2 * torch.asinh(0.5 * torch.exp(-lam)))

    def __repr__(self):
        return f"subVPSDE(beta_min={self.beta_min}, beta_max={self.beta_max}, N={self.N}, eps={self.eps})"


@register_sde("vesde", aliases=("ve",))
class VESDE(SDE):
    """Variance-exploding SDE (the continuous limit of SMLD / NCSN).

    dx = sigma(t) sqrt(2 ln(sigma_max/sigma_min)) dw, sigma(t) = sigma_min (sigma_max/sigma_min)^t,
    so d sigma(t)^2 / dt = g(t)^2. Convention (Song et al. 2021): the marginal
    std is s(t) = sigma(t), i.e. p_0 is the data already perturbed by sigma_min
    (simulating the SDE from a point x0 gives variance sigma(t)^2 - sigma_min^2;
    start from N(x0, sigma_min^2 I) to get sigma(t)^2).

    Networks get the label log sigma(t) and their output is divided by sigma(t) (NCSN++'s
    scale_by_sigma) by default; discrete training is SMLD's.
    """
    prediction, label, discrete_objective = "score_sigma", "log_sigma", "smld"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000,
                 eps: float = 1e-5, T: float = 1.0):
        super().__init__(N=N, T=T, eps=eps)
        check_positive("sigma_min", sigma_min)
        check_positive("sigma_max", sigma_max)
        if sigma_min >= sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_coeff(self, t):
        return torch.zeros_like(t)

    def diffusion_coeff(self, t):
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def marginal_coeffs(self, t):
        return torch.ones_like(t), self.sigma(t)

    def prior_std(self):
        return self.sigma_max

    def log_snr(self, t):
        """lambda = -log sigma(t) = -(log sigma_min + t log(sigma_max / sigma_min)): linear in t."""
        return -(math.log(self.sigma_min) + t * self._log_ratio)

    def _t_from_log_snr(self, lam):
        # -lam - log sigma_min cancels near t = 0: subtract in float64, return in lam's dtype.
        return ((-lam.double() - math.log(self.sigma_min)) / self._log_ratio).to(lam.dtype)

    def discretize(self, x, t, dt=None):
        """SMLD chain: x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z, with
        sigma_i = sigma(t), sigma_{i-1} = sigma(t - dt) and sigma_{i-1} = 0 below
        the first level (t - dt <= 0), as in the discrete NCSN chain."""
        self._check_t(t, x)
        dt = self.T / self.N if dt is None else dt
        sigma = self.sigma(t)
        prev = torch.where(t - dt > 0, self.sigma(torch.clamp(t - dt, min=0.0)), torch.zeros_like(t))
        return torch.zeros_like(x), torch.sqrt(sigma ** 2 - prev ** 2)

    def discrete_log_snrs(self, dtype=torch.float64):
        """lambda_k = -log sigma_k of SMLD's N geometric levels sigma_k = sigma_min (sigma_max /
        sigma_min)^(k / (N - 1)) (NCSN; score_sde's discrete VE), `[N]`."""
        log_sigma = torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), self.N, dtype=torch.float64)
        return (-log_sigma).to(dtype)

    def __repr__(self):
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, N={self.N}, eps={self.eps})"
