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


def _step_orders(steps: int, order: int, lower_order_final: bool) -> List[int]:
    """Order of each multistep step: warm-up min(order, i + 1) (only i + 1 predictions exist),
    and with `lower_order_final` and fewer than 15 steps also min(order, steps - i), i.e. first
    order on the last step (Lu et al. 2022b's stabilising trick for few steps)."""
    orders = [min(order, i + 1) for i in range(steps)]
    if lower_order_final and steps < 15:
        orders = [min(o, steps - i) for i, o in enumerate(orders)]
    return orders


def _phi(h: float):
    """(I_0, I_1, I_2) of the module docstring, accurate for small h."""
    i0 = -math.expm1(-h)
    if h < 0.1:   # the recursion cancels for small h: series I_k = sum_j (-1)^j h^{k+1+j} / (k+1+j)!
        i1 = sum((-h) ** j * h ** 2 / math.factorial(2 + j) for j in range(16))
        i2 = sum((-h) ** j * h ** 3 / math.factorial(3 + j) for j in range(16))
        return i0, i1, i2
    i1 = h - i0
    return i0, i1, h * h / 2 - i1


def dpm_solver(sde, score, x, ts, noise, callback, *, order):
    """DPM-Solver, singlestep, noise prediction (Lu et al. 2022, Algorithms 1-2), order 1|2|3.

    Step u -> t, h = lambda_t - lambda_u, eps_u = eps_hat(x_u, u):

    order 1 (= DDIM):  x_t = (m_t/m_u) x_u - s_t (e^h - 1) eps_u.
    order 2 (r1 = 1/2): an intermediate time s1 with lambda_s1 = lambda_u + r1 h,
        u1  = (m_s1/m_u) x_u - s_s1 (e^{r1 h} - 1) eps_u,
        x_t = (m_t/m_u) x_u - s_t (e^h - 1) eps_u - s_t (e^h - 1) / (2 r1) (eps_hat(u1, s1) - eps_u),
        the second term approximating the linear Taylor term m_t int e^{-lambda}(lambda - lambda_u)
        eps' = s_t (e^h - 1 - h) eps' to O(h^3).
    order 3 (r1 = 1/3, r2 = 2/3): with D1 = eps_hat(u1, s1) - eps_u,
        u2  = (m_s2/m_u) x_u - s_s2 (e^{r2 h} - 1) eps_u - s_s2 r2/r1 ((e^{r2 h} - 1)/(r2 h) - 1) D1,
        x_t = (m_t/m_u) x_u - s_t (e^h - 1) eps_u - s_t/r2 ((e^h - 1)/h - 1) (eps_hat(u2, s2) - eps_u).

    Cost: `order` score evaluations per interval, so NFE = order x steps (`steps` is the
    number of grid intervals; the intermediate times lie inside each interval, at fixed
    fractions of its lambda-length). Global error O(h^order).
    """
    order = _check_order(order, (1, 2, 3))
    B = x.shape[0]
    grid = _coeffs(sde, ts)
    n = len(grid) - 1
    r = {1: [], 2: [0.5], 3: [1 / 3, 2 / 3]}[order]
    inner = []
    if r:   # the intermediate times of every interval, in one vectorised inverse of lambda
        lam_in = torch.tensor([g[3] + ri * (g2[3] - g[3]) for g, g2 in zip(grid[:-1], grid[1:]) for ri in r],
                              dtype=torch.float64)
        t_in = sde.t_from_log_snr(lam_in).to(ts.dtype)
        inner = _coeffs(sde, t_in)

    def eps_hat(x, t, s_):
        tt = torch.full((B,), t, dtype=x.dtype, device=x.device)
        return -s_ * score(x, tt)

    for i in range(n):
        (tu, mu, su, lu), (tt, mt, st, lt) = grid[i], grid[i + 1]
        h = lt - lu
        e_u = -su * score(x, ts[i].expand(B))
        base = (mt / mu) * x - st * math.expm1(h) * e_u
        if order == 1:
            x = base
        elif order == 2:
            t1, m1, s1, _ = inner[i]
            u1 = (m1 / mu) * x - s1 * math.expm1(r[0] * h) * e_u
            x = base - st * math.expm1(h) / (2 * r[0]) * (eps_hat(u1, t1, s1) - e_u)
        else:
            (t1, m1, s1, _), (t2, m2, s2, _) = inner[2 * i], inner[2 * i + 1]
            r1, r2 = r
            u1 = (m1 / mu) * x - s1 * math.expm1(r1 * h) * e_u
            d1 = eps_hat(u1, t1, s1) - e_u
            u2 = ((m2 / mu) * x - s2 * math.expm1(r2 * h) * e_u
                  - s2 * r2 / r1 * (math.expm1(r2 * h) / (r2 * h) - 1) * d1)
            x = base - st / r2 * (math.expm1(h) / h - 1) * (eps_hat(u2, t2, s2) - e_u)
        callback(i, x)
    return x


def _x0_hat(score, x, t_vec, m, s):
    return (x + (s * s) * score(x, t_vec)) / m


def _multistep(sde, score, x, ts, noise, callback, order, lower_order_final, eta=0.0):
    """DPM-Solver++(kM) with k = order in {2, 3}; for eta > 0 the SDE variant (order 2 only)."""
    B = x.shape[0]
    grid = _coeffs(sde, ts)
    n = len(grid) - 1
    orders = _step_orders(n, order, lower_order_final)
    hist = []                                   # [(lambda, x0_hat)], newest last
    for i in range(n):
        (tu, mu, su, lu), (tt, mt, st, lt) = grid[i], grid[i + 1]
        h = lt - lu
        f0 = _x0_hat(score, x, ts[i].expand(B), mu, su)
        hist = (hist + [(lu, f0)])[-3:]
        k = orders[i]
        if eta == 0.0:
            i0, i1, i2 = _phi(h)
            x_next = (st / su) * x + (mt * i0) * f0
        else:   # the SDE family: x_t = (s_t/s_u) e^{-eta h} x + m_t (1 - e^{-(1+eta) h}) x0 + noise
            i0 = -math.expm1(-(1 + eta) * h)
            x_next = (st / su) * math.exp(-eta * h) * x + (mt * i0) * f0
        if k >= 2:
            (l1, f1) = hist[-2]
            rr = (lu - l1) / h                  # h_prev / h
            if k == 2:
                # DPM-Solver++(2M): x0_hat ~ f0 + (f0 - f1)/(2 r), weighted by I_0 (midpoint rule)
                x_next = x_next + (mt * i0 / (2 * rr)) * (f0 - f1)
            else:
                # DPM-Solver++(3M): Newton divided differences in lambda give the derivatives at
                # lambda_u to the needed order: f' ~ f[0,1] + f[0,1,2](l0 - l1), f'' ~ 2 f[0,1,2]
                (l2, f2) = hist[-3]
                d01 = (f0 - f1) / (lu - l1)
                d12 = (f1 - f2) / (l1 - l2)
                d012 = (d01 - d12) / (lu - l2)
                x_next = x_next + mt * (i1 * (d01 + (lu - l1) * d012) + i2 * 2 * d012)
        if eta > 0.0:
            x_next = x_next + (st * math.sqrt(-math.expm1(-2 * eta * h))) * noise.randn()
        x = x_next
        callback(i, x)
    return x


def dpmpp_2m(sde, score, x, ts, noise, callback, *, lower_order_final):
    """DPM-Solver++(2M): multistep, data prediction, second order (Lu et al. 2022b, Algorithm 2).

    From the data form of the exact solution, with x0_hat ~ f0 + (lambda - lambda_u) f',
    f0 = x0_hat(x_u, u), f1 the previous step's prediction at lambda_{u-1}, r = h_prev / h:

        x_t = (s_t/s_u) x_u + m_t I_0 [ (1 + 1/(2r)) f0 - 1/(2r) f1 ],    I_0 = 1 - e^{-h},

    (the derivative term m_t I_1 f' is taken as m_t I_0 h/2 (f0 - f1)/h_prev, equal to O(h^3)).
    The first step is first order (DDIM in data form); with `lower_order_final` and fewer than
    15 steps the last step is first order too. 1 NFE per step: NFE = steps.
    """
    return _multistep(sde, score, x, ts, noise, callback, 2, _check_flag("lower_order_final", lower_order_final))


def dpmpp_3m(sde, score, x, ts, noise, callback, *, lower_order_final):
    """DPM-Solver++(3M): multistep, data prediction, third order (Lu et al. 2022b, App.).

    Taylor terms up to second order, each integrated exactly:

        x_t = (s_t/s_u) x_u + m_t [ I_0 f0 + I_1 f' + I_2 f'' ],

    with f', f'' at lambda_u from the Newton divided differences of the last three
    predictions (f' = f[0,1] + f[0,1,2](lambda_0 - lambda_1), f'' = 2 f[0,1,2]), exact for a
    quadratic x0_hat(lambda). Warm-up: orders 1, 2, then 3; with `lower_order_final` and
    fewer than 15 steps the last two steps drop to orders 2 and 1. NFE = steps.
    """
    return _multistep(sde, score, x, ts, noise, callback, 3, _check_flag("lower_order_final", lower_order_final))


def dpmpp_2m_sde(sde, score, x, ts, noise, callback, *, eta, lower_order_final):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, Sec. 5), with a noise amount `eta` >= 0.

    The reverse SDEs dx = [f - (1 + eta)/2 g^2 score] dt + sqrt(eta) g dw_bar all have the
    marginals p_t (eta = 0: the probability-flow ODE, eta = 1: the reverse SDE). In lambda
    their exact solution with x0_hat held at f0 is

        x_t = (s_t/s_u) e^{-eta h} x_u + m_t (1 - e^{-(1+eta) h}) f0 + s_t sqrt(1 - e^{-2 eta h}) z,

    exact when p_0 is a point mass for every eta (mean m_t x_0, variance s_t^2). The
    second-order multistep correction is that of DPM-Solver++(2M) with weight
    m_t (1 - e^{-(1+eta) h}) / (2 r) on (f0 - f1). eta = 0 is `dpmpp_2m` exactly (no noise is
    drawn). NFE = steps.
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0 (0: dpmpp_2m, 1: reverse SDE), got {eta!r}")
    return _multistep(sde, score, x, ts, noise, callback, 2, _check_flag("lower_order_final", lower_order_final),
                      eta=float(eta))


register_sampler("dpm_solver", dpm_solver, options={"order": 3}, schedule="logsnr", stepwise=False,
                 doc="DPM-Solver singlestep, noise prediction (Lu et al. 2022); order 1|2|3, NFE = order x steps")
register_sampler("dpmpp_2m", dpmpp_2m, options={"lower_order_final": True}, schedule="logsnr", stepwise=False,
                 doc="DPM-Solver++(2M), multistep data prediction (Lu et al. 2022b); NFE = steps")
register_sampler("dpmpp_3m", dpmpp_3m, options={"lower_order_final": True}, schedule="logsnr", stepwise=False,
                 doc="DPM-Solver++(3M), third-order multistep data prediction; NFE = steps")
register_sampler("dpmpp_2m_sde", dpmpp_2m_sde, options={"eta": 1.0, "lower_order_final": True}, stepwise=False,
                 schedule="logsnr", doc="SDE-DPM-Solver++(2M) with noise amount eta (0 = dpmpp_2m); NFE = steps")
