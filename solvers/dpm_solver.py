"""DPM-Solver (Lu et al. 2022) and DPM-Solver++ (Lu et al. 2022b): exponential integrators
of the probability-flow ODE in the log-SNR lambda = log(m/s).

Notation. x_t = m(t) x_0 + s(t) z. With the score of p_t,

    noise prediction  eps_hat(x, t) = -s score(x, t),
    data prediction   x0_hat(x, t)  = (x + s^2 score(x, t)) / m      (Tweedie),

and lambda increasing from T towards eps. Changing variable from t to lambda, the
probability-flow ODE dx/dt = a x - 1/2 g^2 score is semi-linear with an exactly
integrable linear part (a = d log m / dt, g^2 = d s^2/dt - 2 a s^2, d lambda = d log m - d log s).
Its exact solution from u to t (h = lambda_t - lambda_u > 0) is, in the two forms,

    x_t = (m_t / m_u) x_u - m_t  int_{lambda_u}^{lambda_t} e^{-lambda} eps_hat  d lambda       (noise)
    x_t = (s_t / s_u) x_u + m_t  int_0^h e^{tau - h} x0_hat(lambda_u + tau)  d tau              (data)

using m e^{-lambda} = s and s e^{lambda} = m. The solvers expand the prediction in a
Taylor series in lambda and integrate each term exactly; the integrals they need are

    m_t int e^{-lambda} d lambda            = s_t (e^h - 1)
    I_k(h) = int_0^h e^{tau - h} tau^k / k! d tau:
    I_0 = 1 - e^{-h},   I_1 = h - I_0,   I_2 = h^2/2 - I_1.

These only need m, s, lambda, so VP, sub-VP and VE share one code path. Every sampler
here is registered on the log-SNR grid ("logsnr", uniform steps in lambda), the grid
the papers use; `schedule=` overrides it. All step coefficients are computed once, in
float64, from the grid as represented in the sampling dtype.
"""
from __future__ import annotations

import math
from typing import List

import torch

from .sampling import register_sampler


def _coeffs(sde, times) -> List[tuple]:
    """[(t, m, s, lambda)] as Python floats (float64) for times `[n]`."""
    t64 = times.detach().double().cpu()
    m, s = sde.marginal_coeffs(t64)
    lam = sde.log_snr(t64)
    return list(zip(t64.tolist(), m.tolist(), s.tolist(), lam.tolist()))


def _check_order(order, valid):
    if isinstance(order, bool) or order not in valid:
        raise ValueError(f"order must be one of {list(valid)}, got {order!r}")
    return int(order)


def _check_flag(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _check_choice(name, value, valid):
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")
    return value


#: `lower_order_final` thresholds of the references: with fewer steps than this, the last steps
#: drop to lower orders (the last one to first order). `True` is scoresde's (= diffusers'
#: DPMSolverMultistepScheduler); the official DPM-Solver code uses 10; the official UniPC code and
#: diffusers' UniPCMultistepScheduler always do it; k-diffusion never does (it has no such option;
#: only its final step to sigma = 0 is first order).
LOWER_ORDER_FINAL = {"scoresde": 15, "diffusers": 15, "dpm_solver": 10, "unipc": math.inf, "diffusers_unipc": math.inf,
                     "k_diffusion": 0}


def lower_order_threshold(value) -> float:
    """The step count below which `lower_order_final=value` lowers the final orders:
    True -> 15, False -> 0 (never), an int N >= 0, or a reference's name in `LOWER_ORDER_FINAL`."""
    if isinstance(value, bool):
        return LOWER_ORDER_FINAL["scoresde"] if value else 0
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value in LOWER_ORDER_FINAL:
        return LOWER_ORDER_FINAL[value]
    raise ValueError(f"lower_order_final must be True, False, an int N >= 0 (lower orders when steps < N) "
                     f"or one of {sorted(LOWER_ORDER_FINAL)}, got {value!r}")


def _step_orders(steps: int, order: int, threshold: float) -> List[int]:
    """Order of each multistep step: warm-up min(order, i + 1) (only i + 1 predictions exist),
    and when steps < threshold (see `lower_order_threshold`) also min(order, steps - i), i.e.
    first order on the last step (Lu et al. 2022b's stabilising trick for few steps)."""
    orders = [min(order, i + 1) for i in range(steps)]
    if steps < threshold:
        orders = [min(o, steps - i) for i, o in enumerate(orders)]
    return orders


def fast_orders(nfe: int, order: int) -> List[int]:
    """DPM-Solver-fast's orders for an NFE budget (Lu et al. 2022, Sec. 3.3 and App.; the official
    code's 'singlestep' method): order 3 -> K = nfe // 3 + 1 steps, 3,...,3 then [2, 1], [1] or [2]
    as nfe % 3 is 0, 1, 2; order 2 -> 2,...,2 (+ a final 1 for odd nfe); order 1 -> nfe ones.
    sum(orders) == nfe."""
    if order == 3:
        k = nfe // 3 + 1
        tail = {0: [2, 1], 1: [1], 2: [2]}[nfe % 3]
        return [3] * (k - len(tail)) + tail
    if order == 2:
        return [2] * (nfe // 2) + [1] * (nfe % 2)
    return [1] * nfe


def _phi(h: float):
    """(I_0, I_1, I_2) of the module docstring, accurate for small h."""
    i0 = -math.expm1(-h)
    if h < 0.1:   # the recursion cancels for small h: series I_k = sum_j (-1)^j h^{k+1+j} / (k+1+j)!
        i1 = sum((-h) ** j * h ** 2 / math.factorial(2 + j) for j in range(16))
        i2 = sum((-h) ** j * h ** 3 / math.factorial(3 + j) for j in range(16))
        return i0, i1, i2
    i1 = h - i0
    return i0, i1, h * h / 2 - i1


SPLITS = ("fixed", "fast")


def _singlestep(x, e_u, u, stages, t, eps_hat):
    """One DPM-Solver step u -> t of order len(stages) + 1 (noise prediction, Lu et al. 2022,
    Algorithms 1-2 with general r); `u`, `t` and each stage are (t, m, s, lambda) tuples, the
    stages at lambda_u + r_j h. Returns x_t.

        base = (m_t/m_u) x_u - s_t (e^h - 1) eps_u                                 (order 1)
        order 2: u1 = (m_1/m_u) x_u - s_1 (e^{r1 h} - 1) eps_u,
                 x_t = base - s_t (e^h - 1)/(2 r1) (eps(u1) - eps_u)
        order 3: D1 = eps(u1) - eps_u,
                 u2 = (m_2/m_u) x_u - s_2 (e^{r2 h} - 1) eps_u - s_2 (r2/r1) ((e^{r2 h} - 1)/(r2 h) - 1) D1,
                 x_t = base - (s_t/r2) ((e^h - 1)/h - 1) (eps(u2) - eps_u)
    """
    (_, mu, _, lu), (_, mt, st, lt) = u, t
    h = lt - lu
    base = (mt / mu) * x - st * math.expm1(h) * e_u
    if not stages:
        return base
    (t1, m1, s1, l1) = stages[0]
    r1 = (l1 - lu) / h
    u1 = (m1 / mu) * x - s1 * math.expm1(r1 * h) * e_u
    d1 = eps_hat(u1, t1, s1) - e_u
    if len(stages) == 1:
        return base - st * math.expm1(h) / (2 * r1) * d1
    (t2, m2, s2, l2) = stages[1]
    r2 = (l2 - lu) / h
    u2 = ((m2 / mu) * x - s2 * math.expm1(r2 * h) * e_u
          - s2 * r2 / r1 * (math.expm1(r2 * h) / (r2 * h) - 1) * d1)
    return base - st / r2 * (math.expm1(h) / h - 1) * (eps_hat(u2, t2, s2) - e_u)


def _grid_steps(steps, order, split, **_):
    """Grid intervals of `dpm_solver`: `steps` (split="fixed"), or the number of
    DPM-Solver-fast steps for the NFE budget `steps` (split="fast")."""
    order = _check_order(order, (1, 2, 3))
    return len(fast_orders(steps, order)) if _check_choice("split", split, SPLITS) == "fast" else steps


def dpm_solver(sde, score, x, ts, noise, callback, *, order, split, steps=None):
    """DPM-Solver, singlestep, noise prediction (Lu et al. 2022, Algorithms 1-2), order 1|2|3.

    One step u -> t (h = lambda_t - lambda_u) of order k evaluates eps_hat = -s score at u and
    at k - 1 stage times at the lambda-fractions 1/k, ..., (k-1)/k of the step (r = 1/2;
    r = 1/3, 2/3), and is exact for eps_hat polynomial of degree k - 1 in lambda (`_singlestep`
    has the update formulas). Global error O(h^order). Every grid interval is one step.

    split="fixed": every step has order `order`; `steps` intervals, NFE = order x steps.
    split="fast": DPM-Solver-fast (Lu et al. 2022, Sec. 3.3; the official code's 'singlestep'
    method): `steps` is the NFE budget, spent by K = len(fast_orders(steps, order)) steps of
    orders 3,...,3 then 2,1 | 1 | 2 on a grid of K intervals (order 3: K = steps // 3 + 1):
    NFE = steps, info.steps = K (`sample()` passes `steps`; a direct call on a grid must too).
    On the "logsnr" grid this is the official code's logSNR run and k-diffusion's
    `sample_dpm_fast` (equal lambda-steps). (The official code's time-uniform run instead
    groups an NFE-point uniform grid into steps of 3, 3, ..., 2, 1 intervals; not offered.)
    """
    order = _check_order(order, (1, 2, 3))
    split = _check_choice("split", split, SPLITS)
    B = x.shape[0]
    grid = _coeffs(sde, ts)
    n = len(grid) - 1
    if split == "fast" and steps is None:
        raise ValueError("split='fast' needs steps, its NFE budget")
    orders = fast_orders(steps, order) if split == "fast" else [order] * n
    if len(orders) != n:
        raise ValueError(f"split='fast' with steps={steps} takes {len(orders)} grid intervals, got a grid of {n}")
    lam = torch.tensor([g[3] + j / k * (g2[3] - g[3]) for g, g2, k in zip(grid[:-1], grid[1:], orders)
                        for j in range(1, k)], dtype=torch.float64)
    inner = _coeffs(sde, sde.t_from_log_snr(lam).to(ts.dtype)) if lam.numel() else []   # one vectorised inverse

    def eps_hat(x, t, s_):
        tt = torch.full((B,), t, dtype=x.dtype, device=x.device)
        return -s_ * score(x, tt)

    pos = 0
    for i, k in enumerate(orders):
        e_u = -grid[i][2] * score(x, ts[i].expand(B))
        x = _singlestep(x, e_u, grid[i], inner[pos:pos + k - 1], grid[i + 1], eps_hat)
        pos += k - 1
        callback(i, x)
    return x


def _x0_hat(score, x, t_vec, m, s):
    return (x + (s * s) * score(x, t_vec)) / m


VARIANTS_3M = ("reference", "taylor")
SOLVER_TYPES = ("midpoint", "taylor")


def _multistep(sde, score, x, ts, noise, callback, order, threshold, eta=0.0, variant="taylor",
               solver_type="midpoint"):
    """DPM-Solver++(kM) with k = order in {2, 3}; for eta > 0 the SDE variant (order 2 only)."""
    B = x.shape[0]
    grid = _coeffs(sde, ts)
    n = len(grid) - 1
    orders = _step_orders(n, order, threshold)
    hist = []                                   # [(lambda, x0_hat)], newest last
    for i in range(n):
        (tu, mu, su, lu), (tt, mt, st, lt) = grid[i], grid[i + 1]
        h = lt - lu
        f0 = _x0_hat(score, x, ts[i].expand(B), mu, su)
        hist = (hist + [(lu, f0)])[-3:]
        k = orders[i]
        hh = (1 + eta) * h                      # the exponential's rate: h, or (1 + eta) h for the SDE
        i0, i1, i2 = _phi(hh)
        x_next = (st / su) * math.exp(-eta * h) * x + (mt * i0) * f0
        if k >= 2:
            (l1, f1) = hist[-2]
            d01 = (f0 - f1) / (lu - l1)
            if k == 2 and solver_type == "midpoint":
                # x0_hat ~ f0 + (f0 - f1)/(2 r), weighted by I_0 (r = h_prev / h): Lu et al.'s 2M
                x_next = x_next + (mt * i0 * h / 2) * d01
            elif k == 2:
                # the Taylor form: I_1 f' with f' ~ f[0,1] (official solver_type='taylor', k-diffusion 'heun')
                x_next = x_next + (mt * i1 * h / hh) * d01
            else:
                # 3M: Newton divided differences in lambda give the derivatives at lambda_u:
                # f' ~ f[0,1] + f[0,1,2](l0 - l1), f'' ~ 2 f[0,1,2] ("taylor"); the references
                # weight I_2 by f[0,1,2] = f''/2 ("reference")
                (l2, f2) = hist[-3]
                d012 = (d01 - (f1 - f2) / (l1 - l2)) / (lu - l2)
                w2 = 2.0 if variant == "taylor" else 1.0
                x_next = x_next + mt * (i1 * (d01 + (lu - l1) * d012) + i2 * w2 * d012)
        if eta > 0.0:
            x_next = x_next + (st * math.sqrt(-math.expm1(-2 * eta * h))) * noise.randn()
        x = x_next
        callback(i, x)
    return x


def dpmpp_2m(sde, score, x, ts, noise, callback, *, lower_order_final, solver_type):
    """DPM-Solver++(2M): multistep, data prediction, second order (Lu et al. 2022b, Algorithm 2).

    From the data form of the exact solution, with x0_hat ~ f0 + (lambda - lambda_u) f',
    f0 = x0_hat(x_u, u), f1 the previous step's prediction at lambda_{u-1}, r = h_prev / h:

        solver_type="midpoint":  x_t = (s_t/s_u) x_u + m_t I_0 [ (1 + 1/(2r)) f0 - 1/(2r) f1 ],
        solver_type="taylor":    x_t = (s_t/s_u) x_u + m_t [ I_0 f0 + I_1 (f0 - f1)/h_prev ],

    I_0 = 1 - e^{-h}, I_1 = h - I_0 ("midpoint" takes I_1 as I_0 h/2, equal to O(h^3); it is the
    paper's and every reference's default). The first step is first order (DDIM in data form);
    the last steps drop to first order when steps < the `lower_order_final` threshold
    (`lower_order_threshold`). 1 NFE per step: NFE = steps.
    """
    return _multistep(sde, score, x, ts, noise, callback, 2, lower_order_threshold(lower_order_final),
                      solver_type=_check_choice("solver_type", solver_type, SOLVER_TYPES))


def dpmpp_3m(sde, score, x, ts, noise, callback, *, variant, lower_order_final, solver_type):
    """DPM-Solver++(3M): multistep, data prediction, third order in its "taylor" form.

    Taylor terms up to second order, each integrated exactly:

        x_t = (s_t/s_u) x_u + m_t [ I_0 f0 + I_1 f' + I_2 f'' ],

    f', f'' at lambda_u from the Newton divided differences of the last three predictions:
    f' = f[0,1] + f[0,1,2](lambda_0 - lambda_1) and

        variant="taylor":     f'' = 2 f[0,1,2]   (exact for a quadratic x0_hat(lambda): order 3)
        variant="reference":  f'' =   f[0,1,2]   (the official DPM-Solver code's multistep order 3,
                              k-diffusion's sample_dpmpp_3m_sde(eta=0), diffusers' solver_order=3:
                              their D2 = h^2 f''/2 is weighted by h^2 phi_3 = I_2; the step is then
                              off by m_t I_2 f''/2 = O(h^3) and the method is of order 2)

    Warm-up orders 1, 2, then 3 (`solver_type` picks the form of the second-order steps, as in
    `dpmpp_2m`); the last steps drop to orders 2 and 1 when steps < the `lower_order_final`
    threshold. NFE = steps. The default, "reference", is what the name means in the papers'
    code and the other libraries (see docs/bench/sampler-table.md for both forms' measured orders).
    """
    return _multistep(sde, score, x, ts, noise, callback, 3, lower_order_threshold(lower_order_final),
                      variant=_check_choice("variant", variant, VARIANTS_3M),
                      solver_type=_check_choice("solver_type", solver_type, SOLVER_TYPES))


def dpmpp_2m_sde(sde, score, x, ts, noise, callback, *, eta, lower_order_final, solver_type):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, Sec. 5), with a noise amount `eta` >= 0.

    The reverse SDEs dx = [f - (1 + eta)/2 g^2 score] dt + sqrt(eta) g dw_bar all have the
    marginals p_t (eta = 0: the probability-flow ODE, eta = 1: the reverse SDE). In lambda
    their exact solution with x0_hat held at f0 is

        x_t = (s_t/s_u) e^{-eta h} x_u + m_t (1 - e^{-(1+eta) h}) f0 + s_t sqrt(1 - e^{-2 eta h}) z,

    exact when p_0 is a point mass for every eta (mean m_t x_0, variance s_t^2). The
    second-order multistep correction is that of DPM-Solver++(2M) with H = (1 + eta) h:
    m_t I_0(H) h/2 f[0,1] ("midpoint") or m_t I_1(H) h/H f[0,1] ("taylor", k-diffusion's
    'heun'). eta = 0 is `dpmpp_2m` exactly (no noise is drawn). NFE = steps.
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0 (0: dpmpp_2m, 1: reverse SDE), got {eta!r}")
    return _multistep(sde, score, x, ts, noise, callback, 2, lower_order_threshold(lower_order_final),
                      eta=float(eta), solver_type=_check_choice("solver_type", solver_type, SOLVER_TYPES))


register_sampler("dpm_solver", dpm_solver, options={"order": 3, "split": "fixed"}, schedule="logsnr",
                 stepwise=False, grid_steps=_grid_steps,
                 doc="DPM-Solver singlestep, noise prediction (Lu et al. 2022); order 1|2|3; split fixed "
                     "(NFE = order x steps) | fast (DPM-Solver-fast, NFE = steps)")
register_sampler("dpmpp_2m", dpmpp_2m, options={"lower_order_final": True, "solver_type": "midpoint"},
                 schedule="logsnr", stepwise=False,
                 doc="DPM-Solver++(2M), multistep data prediction (Lu et al. 2022b); NFE = steps")
register_sampler("dpmpp_3m", dpmpp_3m, options={"variant": "reference", "lower_order_final": True,
                                                "solver_type": "midpoint"}, schedule="logsnr", stepwise=False,
                 doc="DPM-Solver++(3M), multistep data prediction; variant reference (official code, order 2) "
                     "| taylor (order 3); NFE = steps")
register_sampler("dpmpp_2m_sde", dpmpp_2m_sde, options={"eta": 1.0, "lower_order_final": True,
                                                        "solver_type": "midpoint"}, stepwise=False,
                 schedule="logsnr", doc="SDE-DPM-Solver++(2M) with noise amount eta (0 = dpmpp_2m); NFE = steps")
