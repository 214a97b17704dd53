"""Time-step schedules: the grid T = t_0 > t_1 > ... > t_steps = eps of every fixed-grid sampler.

One concept shared by all fixed-grid samplers (`solvers.sample(..., schedule=, rho=)`):

| schedule    | uniform in                  | dense near | recommended by                              |
|-------------|-----------------------------|------------|---------------------------------------------|
| "uniform"   | t                           | -          | Song et al. 2021 (Euler-Maruyama, PC, DDPM) |
| "logsnr"    | lambda = log(m/s)           | both ends  | Lu et al. 2022 (DPM-Solver, ++), UniPC      |
| "quadratic" | sqrt(t)                     | eps        | DPM-Solver's "time_quadratic" / DDIM "quad" |
| "karras"    | sigma^(1/rho), sigma = s/m  | eps        | Karras et al. 2022 (EDM), rho = 7           |

"karras": sigma_i = (sigma_T^(1/rho) + i/N (sigma_eps^(1/rho) - sigma_T^(1/rho)))^rho with
sigma = s/m (`SDE.edm_sigma`), mapped back to t with `SDE.t_from_edm_sigma`, so on VP and
sub-VP it is EDM's grid for x/m. rho = 1 is uniform in sigma; rho -> inf tends to "logsnr".
"logsnr" and "karras" invert lambda(t) in closed form (`SDE.t_from_log_snr`).

The grid is computed in float64 and then cast; its ends are exactly T and eps.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

Tensor = torch.Tensor

SCHEDULES = ("uniform", "logsnr", "quadratic", "karras")


def time_grid(sde, steps: int, schedule: str = "uniform", eps: Optional[float] = None, rho: float = 7.0,
              dtype: Optional[torch.dtype] = None, device=None) -> Tensor:
    """The decreasing grid `[steps + 1]` from `sde.T` to `eps` (default `sde.eps`).

    Args:
        sde:      a `sde_lib.SDE` (needs `log_snr` / `t_from_log_snr` for "logsnr" and "karras").
        steps:    number of time intervals, a positive int.
        schedule: one of `SCHEDULES` (see the module docstring).
        eps:      last time, in (0, T).
        rho:      the "karras" exponent (> 0; EDM uses 7); ignored by the other schedules.
        dtype, device: of the returned tensor (default torch's default dtype, CPU).

    Raises ValueError for a bad argument, or when the grid, once cast to `dtype`, is not
    strictly decreasing (too many steps for the precision).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {list(SCHEDULES)}")
    T = float(sde.T)
    eps = sde.eps if eps is None else eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0.0 < eps < T):
        raise ValueError(f"eps must lie in (0, T) = (0, {T}), got {eps!r}")
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho) or rho <= 0:
        raise ValueError(f"rho must be a finite number > 0, got {rho!r}")
    dtype = dtype or torch.get_default_dtype()
    ends = torch.tensor([T, float(eps)], dtype=torch.float64)
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)     # 0 at T, 1 at eps

    if schedule == "uniform":
        t = T + u * (eps - T)
    elif schedule == "quadratic":
        t = (math.sqrt(T) + u * (math.sqrt(eps) - math.sqrt(T))) ** 2
    elif schedule == "logsnr":
        lam_T, lam_eps = sde.log_snr(ends)
        t = sde.t_from_log_snr(lam_T + u * (lam_eps - lam_T))
    else:  # karras
        s_T, s_eps = sde.edm_sigma(ends) ** (1.0 / rho)
        t = sde.t_from_edm_sigma((s_T + u * (s_eps - s_T)) ** rho)
    t[0], t[-1] = T, eps                       # exact ends (the inverses are exact only to rounding)
    t = t.to(dtype=dtype, device=device)
    if steps > 1 and not bool((t[1:] < t[:-1]).all()):
        raise ValueError(f"the {schedule!r} grid with steps={steps} is not strictly decreasing in {dtype}; "
                         f"use fewer steps or a wider dtype")
    return t
