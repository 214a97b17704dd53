"""The abstract SDE and its reverse-time / probability-flow counterpart.

Notation (Song et al. 2021, "Score-Based Generative Modeling through SDEs"):

    forward SDE        dx = f(x, t) dt + g(t) dw,            t in [0, T]
    reverse SDE        dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dw_bar
    probability flow   dx/dt = f(x, t) - 1/2 g(t)^2 score(x, t)

Every SDE here has an affine drift f(x, t) = a(t) x, so the perturbation kernel
is Gaussian: p_0t(x_t | x_0) = N(m(t) x_0, s(t)^2 I). Subclasses implement the
scalar functions of t (`marginal_coeffs`, `diffusion_coeff`, `drift_coeff`); the
tensor-level methods of the contract (`sde`, `marginal_prob`, ...) are written
once here.

Shapes: `x` is `[B, *dims]` (vectors `[B, D]` or images `[B, C, H, W]`), `t` a
float tensor `[B]`. Scalars of time come back as `[B]`; they are broadcast
against `x` with `expand_as_batch`. The dtype of `x` is kept throughout.
"""
from __future__ import annotations

import abc
import math
from typing import Callable, Optional, Tuple

import torch

Tensor = torch.Tensor
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def expand_as_batch(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample `[B]` tensor to `[B, 1, ..., 1]` so it broadcasts with `x`."""
    return v.reshape(v.shape[0], *([1] * (x.dim() - 1)))


def batch_sum(x: Tensor) -> Tensor:
    """Sum over every dimension but the first: `[B, *dims] -> [B]`."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def check_positive(name: str, value, allow_zero: bool = False) -> None:
    """Raise ValueError unless `value` is a finite number > 0 (or >= 0)."""
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {expected}, got {value!r}")


class SDE(abc.ABC):
    """Abstract forward SDE `dx = a(t) x dt + g(t) dw` on `[0, T]`.

    Attributes:
        T:   end time (1.0).
        N:   default number of discretisation steps.
        eps: smallest time used by samplers and the likelihood.
    """

    #: Whether `marginal_prob`/`sde` check that every t lies in [0, T]. The
    #: check is one reduction per call; set to False on an instance to skip it.
    check_time: bool = True

    #: The default network parameterisation of this SDE (what `model.prediction = "auto"` and
    #: `model.label = "auto"` mean; see `models.parameterization`). None: the SDE declares none,
    #: and a model on it must set both fields explicitly (never a silent VP default).
    prediction: Optional[str] = None
    label: Optional[str] = None
    #: The discrete-time objective of `training.continuous = False` ("ddpm", "smld") or None.
    discrete_objective: Optional[str] = None
    #: The name the class is registered under (`register_sde`).
    registered_name: Optional[str] = None

    def __init__(self, N: int, T: float = 1.0, eps: float = 1e-3):
        if not isinstance(N, int) or isinstance(N, bool) or N <= 0:
            raise ValueError(f"N (number of discretisation steps) must be a positive int, got {N!r}")
        check_positive("T", T)
        check_positive("eps", eps)
        if eps >= T:
            raise ValueError(f"eps must lie in (0, T) = (0, {T}), got {eps!r}")
        self.N = N
        self.T = float(T)
        self.eps = float(eps)

    # ---- scalar functions of t, implemented by subclasses ----------------------
    @abc.abstractmethod
    def drift_coeff(self, t: Tensor) -> Tensor:
        """a(t) in f(x, t) = a(t) x, `[B]`."""

    @abc.abstractmethod
    def diffusion_coeff(self, t: Tensor) -> Tensor:
        """g(t), `[B]`."""

    @abc.abstractmethod
    def marginal_coeffs(self, t: Tensor) -> Tuple[Tensor, Tensor]:
        """(m(t), s(t)), each `[B]`: p_0t(x_t | x_0) = N(m(t) x_0, s(t)^2 I)."""

    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian prior at T."""

    # ---- log-SNR and EDM's sigma (used by the fast samplers and time-step schedules) ---
    def log_snr(self, t: Tensor) -> Tensor:
        """lambda(t) = log(m(t) / s(t)), `[B]`; strictly decreasing in t, +inf at t = 0 when s(0) = 0.

        The half log-SNR of DPM-Solver (Lu et al. 2022). Subclasses override it
        with a form that keeps relative precision near t = 0.
        """
        m, s = self.marginal_coeffs(t)
        return torch.log(m) - torch.log(s)

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        """The inverse of `log_snr`: t with lambda(t) = lam, `[B]`, in the dtype of `lam`.

        Raises ValueError for NaN or for lam outside [lambda(T), lambda(0)] (beyond
        rounding); results are clamped into [0, T] against rounding only. The
        SDEs here invert in closed form (`_t_from_log_snr`); the default is a
        vectorised bisection on [0, T] in float64 (60 halvings: to machine
        precision), valid for any SDE whose lambda(t) decreases strictly.
        """
        if not torch.is_tensor(lam) or not lam.is_floating_point():
            raise ValueError(f"log_snr must be a float tensor, got {type(lam).__name__}")
        if torch.isnan(lam).any():
            raise ValueError("log_snr contains NaN")
        t = self._t_from_log_snr(lam)
        tol = 1e3 * torch.finfo(lam.dtype).eps * self.T
        lo, hi = t.min().item(), t.max().item()
        if lo < -tol or hi > self.T + tol or math.isnan(lo) or math.isnan(hi):
            lam_T = self.log_snr(torch.tensor([self.T], dtype=torch.float64)).item()
            lam_0 = self.log_snr(torch.tensor([0.0], dtype=torch.float64)).item()
            raise ValueError(f"log_snr must lie in [lambda(T), lambda(0)] = [{lam_T:.6g}, {lam_0:.6g}], "
                             f"got values in [{lam.min().item():.6g}, {lam.max().item():.6g}]")
        return t.clamp(0.0, self.T)

    def _t_from_log_snr(self, lam: Tensor) -> Tensor:
        lam64 = lam.double()
        lo = torch.zeros_like(lam64)
        hi = torch.full_like(lam64, self.T)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > lam64          # lambda decreases: the root lies to the right
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        # Outside [lambda(T), lambda(0)] (beyond the rounding of lam's dtype) the bracket sticks
        # to an end: move it out of [0, T] so that `t_from_log_snr` reports the bad value.
        tol = 1e3 * torch.finfo(lam.dtype).eps * lam64.abs().clamp(min=1.0)
        lam_T = self.log_snr(torch.full_like(lam64, self.T))
        lam_0 = self.log_snr(torch.zeros_like(lam64))
        t = 0.5 * (lo + hi)
        t = torch.where(lam64 < lam_T - tol, torch.full_like(t, 2 * self.T + 1), t)
        t = torch.where(lam64 > lam_0 + tol, torch.full_like(t, -self.T - 1), t)
        return t.to(lam.dtype)

    def edm_sigma(self, t: Tensor) -> Tensor:
        """EDM's noise level sigma(t) = s(t) / m(t) = exp(-lambda(t)), `[B]` (Karras et al. 2022).

        x_t / m(t) = x_0 + sigma(t) z: the state rescaled to data scale has noise std sigma.
        For VE (m = 1) it is s(t) itself.
        """
        m, s = self.marginal_coeffs(t)
        return s / m

    def t_from_edm_sigma(self, sigma: Tensor) -> Tensor:
        """The inverse of `edm_sigma`: t with s(t)/m(t) = sigma (> 0), via `t_from_log_snr(-log sigma)`."""
        if not torch.is_tensor(sigma) or not sigma.is_floating_point():
            raise ValueError(f"sigma must be a float tensor, got {type(sigma).__name__}")
        if torch.isnan(sigma).any() or (sigma <= 0).any():
            raise ValueError(f"sigma must be > 0, got values in [{sigma.min().item():.6g}, {sigma.max().item():.6g}]")
        return self.t_from_log_snr(-torch.log(sigma))

    # ---- the contract ---------------------------------------------------------------
    def _check_t(self, t: Tensor, x: Optional[Tensor] = None) -> None:
        if not torch.is_tensor(t):
            raise ValueError(f"t must be a float tensor of shape [B], got {type(t).__name__}")
        if t.dim() != 1:
            raise ValueError(f"t must have shape [B], got shape {tuple(t.shape)}")
        if x is not None and t.shape[0] != x.shape[0]:
            raise ValueError(f"t has {t.shape[0]} entries but x has batch size {x.shape[0]}")
        if self.check_time:
            lo, hi = t.min().item(), t.max().item()
            if not (lo >= 0.0 and hi <= self.T):  # also catches NaN
                raise ValueError(f"t must lie in [0, T] = [0, {self.T}], got values in [{lo}, {hi}]")

    def sde(self, x: Tensor, t: Tensor) -> Tuple[Tensor, Tensor]:
        """(drift f(x, t) `[B, *dims]`, diffusion g(t) `[B]`)."""
        self._check_t(t, x)
        return expand_as_batch(self.drift_coeff(t), x) * x, self.diffusion_coeff(t)

    def marginal_prob(self, x0: Tensor, t: Tensor) -> Tuple[Tensor, Tensor]:
        """Perturbation kernel: (mean m(t) x0 `[B, *dims]`, std s(t) `[B]`)."""
        self._check_t(t, x0)
        m, s = self.marginal_coeffs(t)
        return expand_as_batch(m, x0) * x0, s

    def prior_sampling(self, shape, generator: Optional[torch.Generator] = None,
                       dtype: Optional[torch.dtype] = None, device=None) -> Tensor:
        """A draw from the prior N(0, prior_std^2 I) of the given shape `[B, *dims]`."""
        return self.prior_std() * torch.randn(*shape, generator=generator, dtype=dtype, device=device)

    def prior_logp(self, z: Tensor) -> Tensor:
        """log N(z; 0, prior_std^2 I) in nats, `[B]`: -D/2 log(2 pi sigma^2) - |z|^2 / (2 sigma^2)."""
        sigma = self.prior_std()
        D = z[0].numel()
        return -0.5 * D * math.log(2 * math.pi * sigma ** 2) - batch_sum(z ** 2) / (2 * sigma ** 2)

    def discretize(self, x: Tensor, t: Tensor, dt: Optional[float] = None) -> Tuple[Tensor, Tensor]:
        """One step of the discrete-time chain x_{i+1} = x_i + f_i + G_i z_i.

        The default is the Euler-Maruyama chain, f_i = f(x, t) dt and
        G_i = g(t) sqrt(dt), with dt = T / N unless given. VP and VE override
        it with the DDPM and SMLD chains. Returns (f `[B, *dims]`, G `[B]`).
        """
        dt = self.T / self.N if dt is None else dt
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    # ---- what differs between SDEs, asked by samplers, losses and models --------------------
    def default_parameterization(self) -> Tuple[str, str]:
        """(prediction, label) this SDE's networks use by default; ValueError if it declares none."""
        if self.prediction is None or self.label is None:
            raise ValueError(f"{type(self).__name__} declares no default network parameterisation; set "
                             f"model.prediction and model.label explicitly (or give the class "
                             f"`prediction` and `label` attributes)")
        return self.prediction, self.label

    def ancestral_coeffs(self, t: Tensor, dt: float) -> Tuple[Tensor, Tensor, Tensor]:
        """(a, b^2, posterior variance), each `[B]`, of the one-step kernel from t - dt to t.

        x_t | x_{t-dt} ~ N(a x_{t-dt}, b^2 I) with a = m(t)/m(t-dt), b^2 = s(t)^2 - a^2 s(t-dt)^2;
        the posterior Var[x_{t-dt} | x_t, x_0] = b^2 s(t-dt)^2 / s(t)^2. VP overrides b^2 with
        its DDPM beta_i (the same number, computed without cancellation).
        """
        m, s = self.marginal_coeffs(t)
        m_p, s_p = self.marginal_coeffs(t - dt)
        a = m / m_p
        b2 = torch.clamp(s ** 2 - a ** 2 * s_p ** 2, min=0.0)
        return a, b2, b2 * (s_p / s) ** 2

    def ancestral_variance(self, b2: Tensor, post: Tensor) -> Tensor:
        """The noise variance of an ancestral step: the posterior one (SMLD, Song et al. 2021 eq. 47);
        VP overrides it with DDPM's b^2 = beta_i (Ho et al. 2020, sigma_t^2 = beta_t)."""
        return post

    def langevin_alpha(self, t: Tensor, dt: float) -> Tensor:
        """alpha_i of the Langevin corrector (Song et al. 2021, Alg. 4-5), `[B]`: the squared
        one-step mean coefficient (m(t)/m(t - dt))^2, i.e. 1 - beta_i for VP, 1 for VE."""
        m, _ = self.marginal_coeffs(t)
        m_p, _ = self.marginal_coeffs(torch.clamp(t - dt, min=0.0))
        return (m / m_p) ** 2

    def discrete_log_snrs(self, dtype=torch.float64) -> Tensor:
        """lambda_k = log(m_k / s_k), k = 0..N-1, of the published N-step discrete chain this SDE is
        the limit of (DDPM for VP, SMLD for VE), decreasing in k. The table a discrete-time model
        (`model.label = "discrete_step"`) is conditioned on. The base SDE has none."""
        raise ValueError(f"{type(self).__name__} has no discrete-time chain; model.label='discrete_step' "
                         f"needs an SDE that defines discrete_log_snrs (vpsde with the linear schedule, vesde)")

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE (or, with probability_flow=True, the probability-flow ODE)."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """Reverse-time SDE / probability-flow ODE of a forward `SDE` for a given score.

    `sde(x, t)` returns the drift of the reverse process written for a *negative*
    time step, as in Song et al. 2021:

        drift = f(x, t) - c g(t)^2 score(x, t),  c = 1 (SDE) or 1/2 (ODE)
        diffusion = g(t) (SDE) or 0 (ODE)

    so one Euler-Maruyama step from t to t - dt is
    `x - drift dt + diffusion sqrt(dt) z`. `discretize` gives the reverse of the
    forward chain (used by the reverse-diffusion predictor):
    `x_{i-1} = x_i - f_i + c G_i^2 score + G_i z` (G_i zero for the ODE).
    """

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = bool(probability_flow)
        self.T, self.N, self.eps = forward.T, forward.N, forward.eps

    def sde(self, x: Tensor, t: Tensor) -> Tuple[Tensor, Tensor]:
        drift, diffusion = self.forward.sde(x, t)
        score = self.score_fn(x, t)
        c = 0.5 if self.probability_flow else 1.0
        drift = drift - c * expand_as_batch(diffusion ** 2, x) * score
        return drift, torch.zeros_like(diffusion) if self.probability_flow else diffusion

    def discretize(self, x: Tensor, t: Tensor, dt: Optional[float] = None) -> Tuple[Tensor, Tensor]:
        f, G = self.forward.discretize(x, t, dt)
        score = self.score_fn(x, t)
        c = 0.5 if self.probability_flow else 1.0
        rev_f = f - c * expand_as_batch(G ** 2, x) * score
        return rev_f, torch.zeros_like(G) if self.probability_flow else G
