"""UniPC: a unified predictor-corrector for the probability-flow ODE (Zhao et al. 2023).

Notation as in `solvers.dpm_solver`: x_t = m x_0 + s z, lambda = log(m/s), data
prediction f(x, t) = x0_hat = (x + s^2 score)/m, and the exact solution from u to t
(h = lambda_t - lambda_u > 0)

    x_t = (s_t/s_u) x_u + m_t int_0^h e^{tau - h} f(lambda_u + tau) d tau.

Expanding f in lambda, f(lambda_u + tau) = sum_k f^(k) tau^k / k!, gives

    x_t = (s_t/s_u) x_u + m_t I_0 f_u + m_t sum_{k>=1} I_k(h) f^(k),   I_k = int_0^h e^{tau-h} tau^k/k! d tau.

UniPC replaces the tail by B(h) sum_m a_m D_m / r_m, where D_m = f(lambda_u + r_m h) - f_u
are differences to other predictions (previous steps: r_m < 0; the new point: r = 1).
Since D_m / r_m = sum_k r_m^{k-1} h^k f^(k) / k!, the tail is matched up to order p when

    sum_m a_m r_m^{k-1} = k! I_k(h) / (h^k B(h)),   k = 1..p           (R_p a = b_p),

for any B(h) = h + O(h^2): "bh1" B(h) = h, "bh2" B(h) = 1 - e^{-h} (= I_0; the paper's
e^h - 1 in its sign convention for data prediction).

* UniP-p (predictor) uses the p - 1 previous predictions (order p); for p = 2 the paper
  takes a_1 = 1/2 (with bh2 this is exactly DPM-Solver++(2M)).
* UniC (corrector) adds the prediction at the predicted point, f(x_t_pred, t), with
  r = 1, and solves the p x p system (for p = 1: a_1 = 1/2, the trapezoid rule). The
  corrected x_t raises the order by one. The evaluation f(x_t_pred, t) is reused as the
  next step's f_u, so the corrector costs no extra NFE; on the last step it is skipped
  (its evaluation would serve no later step), so NFE = steps.

Warm-up: step i uses order min(order, i + 1); with `lower_order_final` and fewer than 15
steps also min(order, steps - i). Registered on the log-SNR grid (the paper's choice).
"""
from __future__ import annotations

import math
from typing import List

import torch

from .dpm_solver import _check_flag, _check_order, _coeffs, _step_orders
from .sampling import register_sampler

VARIANTS = ("bh1", "bh2")


def _b_vector(h: float, p: int, variant: str) -> List[float]:
    """b_k = k! I_k(h) / (h^k B(h)), k = 1..p.

    g_k = I_k / h^k follows g_0 = 1 - e^{-h}, g_k = 1/k! - g_{k-1}/h, which cancels for
    small h; below h = 0.1 the series g_k = h sum_j (-h)^j / (k + 1 + j)! is used instead."""
    Bh = h if variant == "bh1" else -math.expm1(-h)
    if h < 0.1:
        g = [h * sum((-h) ** j / math.factorial(k + 1 + j) for j in range(16)) for k in range(1, p + 1)]
    else:
        g, gk = [], -math.expm1(-h)
        for k in range(1, p + 1):
            gk = 1.0 / math.factorial(k) - gk / h
            g.append(gk)
    return [math.factorial(k) * gk / Bh for k, gk in zip(range(1, p + 1), g)]


def _solve(rs: List[float], b: List[float]) -> List[float]:
    """a with sum_m a_m r_m^{k-1} = b_k, k = 1..len(rs) (a small Vandermonde system, float64)."""
    R = torch.tensor([[r ** k for r in rs] for k in range(len(rs))], dtype=torch.float64)
    return torch.linalg.solve(R, torch.tensor(b, dtype=torch.float64)).tolist()


def unipc(sde, score, x, ts, noise, callback, *, order, variant, lower_order_final, use_corrector):
    """UniPC-p (Zhao et al. 2023): UniP-p predictor + UniC corrector, data prediction, multistep.

    Step u -> t with f_u = f(x_u, u), previous predictions f_{u-m} at lambda_{u-m},
    r_m = (lambda_{u-m} - lambda_u)/h, D_m = f_{u-m} - f_u, p the step's order:

        base   = (s_t/s_u) x_u + m_t (1 - e^{-h}) f_u                         (DDIM, data form)
        x_pred = base + m_t B(h) sum_{m<p} a_m D_m / r_m                       (UniP-p)
        f_t    = f(x_pred, t)                                                  (the step's 1 NFE)
        x_t    = base + m_t B(h) [sum_{m<p} c_m D_m / r_m + c_p (f_t - f_u)]   (UniC)

    with a solving the (p-1)-system and c the p-system of the module docstring. Order
    p + 1 with the corrector. NFE = steps (see the module docstring).
    `use_corrector=False` keeps UniP-p alone (the paper's ablation; order p): then
    order 1 is DDIM and order 2 with bh2 is DPM-Solver++(2M).
    """
    order = _check_order(order, (1, 2, 3))
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    lower_order_final = _check_flag("lower_order_final", lower_order_final)
    use_corrector = _check_flag("use_corrector", use_corrector)
    B = x.shape[0]
    grid = _coeffs(sde, ts)
    n = len(grid) - 1
    orders = _step_orders(n, order, lower_order_final)
    t0, m0, s0, _ = grid[0]
    f_u = (x + (s0 * s0) * score(x, ts[0].expand(B))) / m0
    hist = []                                   # [(lambda, f)] of earlier steps, newest last
    for i in range(n):
        (tu, mu, su, lu), (tt, mt, st, lt) = grid[i], grid[i + 1]
        h = lt - lu
        p = orders[i]
        Bh = h if variant == "bh1" else -math.expm1(-h)
        prev = hist[::-1][:p - 1]               # the p - 1 newest earlier predictions
        rs = [(lm - lu) / h for lm, _ in prev]
        ds = [(fm - f_u) / r for (_, fm), r in zip(prev, rs)]
        b = _b_vector(h, p, variant)
        base = (st / su) * x + (mt * -math.expm1(-h)) * f_u
        x_pred = base
        if p >= 2:
            a = [0.5] if p == 2 else _solve(rs, b[:p - 1])
            x_pred = base + (mt * Bh) * sum(am * dm for am, dm in zip(a, ds))
        hist = (hist + [(lu, f_u)])[-3:]
        if i == n - 1:                           # last step: no corrector, no extra NFE
            x = x_pred
        else:
            f_t = (x_pred + (st * st) * score(x_pred, ts[i + 1].expand(B))) / mt
            if use_corrector:
                c = [0.5] if p == 1 else _solve(rs + [1.0], b)
                corr = sum(cm * dm for cm, dm in zip(c[:-1], ds)) if p >= 2 else 0.0
                x = base + (mt * Bh) * (corr + c[-1] * (f_t - f_u))
            else:
                x = x_pred
            f_u = f_t
        callback(i, x)
    return x


register_sampler("unipc", unipc, stepwise=False, options={"order": 3, "variant": "bh2", "lower_order_final": True,
                                          "use_corrector": True},
                 schedule="logsnr",
                 doc="UniPC (Zhao et al. 2023): UniP-p + UniC corrector, data prediction, order 1|2|3, "
                     "B(h) bh1|bh2; NFE = steps")
