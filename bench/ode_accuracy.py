"""Benchmark: accuracy per NFE of the probability-flow ODE, ours vs scipy's RK45 (the reference's).

Problem: a 16-D, 5-component Gaussian mixture with its exact score (float64, 100 samples).

* endpoint: x_T ~ N(0, I) integrated from T to eps; RMS error over the batch (and the
  worst sample's error norm) against dopri8 at 1e-12;
* likelihood: log p_eps(x) of mixture samples by `solvers.log_likelihood` (exact trace),
  the prior replaced by the exact log p_T so that only solver error remains; mean
  absolute error against the closed form.

Part 1 (VP, mixture seed 0, the issue's problem), rtol = atol = tol in 1e-3..1e-6: scipy
`solve_ivp(method="RK45")` on the whole batch flattened into one vector (what the reference
implementation does), torchdiffeq's dopri5 (Shampine's error estimate), and `rk45` (the same
steps with Dormand-Prince's estimate, `solvers.ode`) with the batch and per-sample norms.

Part 2 (robustness): VP, sub-VP and VE x mixture seeds 0 and 5 (on which rk45's safety factor
0.7 was chosen) and held-out seeds 11 and 12, the same tolerances. For dopri5, rk45 with
torchdiffeq's safety 0.9 (the error estimate alone) and rk45, all with the batch norm (the
reference's), and rk45 with the per-sample norm (the likelihood's default): per case the error and NFE ratios to scipy at equal tolerance, and the error ratio at
equal NFE (scipy's error interpolated log-log in NFE between its tolerances); geometric means
over the 24 cases of each group.

    python bench/ode_accuracy.py         # ~8 minutes on one core
    -> bench/results/ode_accuracy.json

Writes numbers, asserts nothing (tests/test_ode_norm.py holds the checks).
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import torch
from scipy.integrate import solve_ivp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.analytic import make_mixture  # noqa: E402
from sde_lib import VESDE, VPSDE, subVPSDE  # noqa: E402
from solvers import CountedScore, log_likelihood  # noqa: E402
from solvers.ode import odeint_flow  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
B, D = 100, 16
TOLS = [1e-3, 1e-4, 1e-5, 1e-6]


def scipy_endpoint(sde, score, xT, tol):
    rs = sde.reverse(score, probability_flow=True)

    def g(t, y):
        x = torch.from_numpy(y).reshape(xT.shape)
        return rs.sde(x, torch.full((xT.shape[0],), t, dtype=x.dtype))[0].reshape(-1).numpy()
    s = solve_ivp(g, (sde.T, sde.eps), xT.reshape(-1).numpy(), rtol=tol, atol=tol, method="RK45")
    return torch.from_numpy(s.y[:, -1]).reshape(xT.shape)


def scipy_likelihood(sde, score, x, tol):
    """The augmented (x, delta) ODE as one flat vector, as the reference does (exact trace)."""
    def g(t, y):
        xt = torch.from_numpy(y[:-B]).reshape(x.shape).clone()
        tb = torch.full((B,), t, dtype=x.dtype)
        with torch.enable_grad():
            xr = xt.requires_grad_(True)
            s = score(xr, tb)
            div = sum(torch.autograd.grad(s[:, j].sum(), xr, retain_graph=True)[0][:, j] for j in range(D))
        a, g2 = sde.drift_coeff(tb), sde.diffusion_coeff(tb) ** 2
        dx = a[:, None] * xt.detach() - 0.5 * g2[:, None] * s.detach()
        return np.concatenate([dx.reshape(-1).numpy(), (D * a - 0.5 * g2 * div).detach().numpy()])
    s = solve_ivp(g, (sde.eps, sde.T), np.concatenate([x.reshape(-1).numpy(), np.zeros(B)]),
                  rtol=tol, atol=tol, method="RK45")
    return torch.from_numpy(s.y[:-B, -1]).reshape(x.shape), torch.from_numpy(s.y[-B:, -1]), s.nfev


def scipy_rows(sde, score, xT, x, truth, pT, ref, tol):
    c = CountedScore(score)
    e = (scipy_endpoint(sde, c, xT, tol) - ref).reshape(B, -1)
    z, delta, nfev = scipy_likelihood(sde, score, x, tol)
    lerr = (pT.log_prob(z) + delta - truth).abs()
    return {"solver": "scipy RK45 (flat batch)", "tol": tol, "endpoint_nfe": c.nfe,
            "endpoint_rms": e.pow(2).mean().sqrt().item(), "endpoint_worst": e.norm(dim=1).max().item(),
            "likelihood_nfe": nfev, "likelihood_mae": lerr.mean().item(), "likelihood_worst": lerr.max().item()}


def ours(sde, score, xT, x, truth, pT, ref, tol, method, norm, controller=None):
    c = CountedScore(score)
    e = (odeint_flow(sde, c, xT, sde.T, sde.eps, method, tol, tol, norm=norm, controller=controller)[0][-1]
         - ref).reshape(B, -1)
    res = log_likelihood(sde, score, x, trace="exact", method=method, rtol=tol, atol=tol, norm=norm,
                         controller=controller)
    lerr = (pT.log_prob(res.z) + res.delta_logp - truth).abs()
    return {"solver": f"{method}, norm={norm}" + (f", {controller}" if controller else ""), "tol": tol, "endpoint_nfe": c.nfe,
            "endpoint_rms": e.pow(2).mean().sqrt().item(), "endpoint_worst": e.norm(dim=1).max().item(),
            "likelihood_nfe": res.nfe, "likelihood_mae": lerr.mean().item(), "likelihood_worst": lerr.max().item()}


def problem(sde, seed):
    gm = make_mixture("random", D=D, K=5, generator=torch.Generator().manual_seed(seed))
    score = gm.score_fn(sde)
    xT = sde.prior_sampling((B, D), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = odeint_flow(sde, score, xT, sde.T, sde.eps, "dopri8", 1e-12, 1e-12)[0][-1]
    x = gm.sample(B, generator=torch.Generator().manual_seed(2))
    truth = gm.log_prob_t(sde, x, torch.full((B,), sde.eps, dtype=x.dtype))
    return score, xT, x, truth, gm.marginal(sde, sde.T), ref


def at_nfe(points, nfe):
    """log-log interpolation of error against NFE through (nfe, err) points (sorted by NFE; clamped
    extrapolation with the end segments' slopes)."""
    pts = sorted(points)
    lx = [math.log(p[0]) for p in pts]
    ly = [math.log(p[1]) for p in pts]
    x = math.log(nfe)
    i = max(0, min(len(pts) - 2, sum(1 for v in lx if v <= x) - 1))
    if lx[i + 1] == lx[i]:
        return math.exp(ly[i])
    return math.exp(ly[i] + (ly[i + 1] - ly[i]) * (x - lx[i]) / (lx[i + 1] - lx[i]))


def geomean(v):
    return math.exp(sum(math.log(a) for a in v) / len(v))


def main():
    torch.set_num_threads(1)
    rows = []
    score, xT, x, truth, pT, ref = problem(VPSDE(), 0)
    for tol in TOLS:
        rows.append(scipy_rows(VPSDE(), score, xT, x, truth, pT, ref, tol))
        for method, norm in (("dopri5", "batch"), ("rk45", "batch"), ("rk45", "sample")):
            rows.append(ours(VPSDE(), score, xT, x, truth, pT, ref, tol, method, norm))
        for r in rows[-4:]:
            print(f"{r['tol']:.0e} {r['solver']:<24} endpoint nfe {r['endpoint_nfe']:4d} rms {r['endpoint_rms']:.2e} "
                  f"worst {r['endpoint_worst']:.2e} | likelihood nfe {r['likelihood_nfe']:4d} "
                  f"mae {r['likelihood_mae']:.2e} worst {r['likelihood_worst']:.2e}", flush=True)

    variants = {"dopri5": ("dopri5", "batch", None), "rk45, safety 0.9": ("rk45", "batch", {"safety": 0.9}),
                "rk45": ("rk45", "batch", None), "rk45, norm=sample": ("rk45", "sample", None)}
    cases, summary = [], {}
    for group, seeds in (("tuning", (0, 5)), ("held_out", (11, 12))):
        for name, make in (("vp", VPSDE), ("subvp", subVPSDE), ("ve", VESDE)):
            for seed in seeds:
                sde = make()
                score, xT, x, truth, pT, ref = problem(sde, seed)
                runs = {"scipy": [scipy_rows(sde, score, xT, x, truth, pT, ref, tol) for tol in TOLS]}
                for label, (method, norm, controller) in variants.items():
                    runs[label] = [ours(sde, score, xT, x, truth, pT, ref, tol, method, norm, controller)
                                   for tol in TOLS]
                cases.append({"group": group, "sde": name, "mixture_seed": seed, "runs": runs})
        for label in variants:
            out = {}
            for part, err in (("endpoint", "endpoint_rms"), ("likelihood", "likelihood_mae")):
                e_ratio, n_ratio, wp = [], [], []
                for case in (c for c in cases if c["group"] == group):
                    sc = case["runs"]["scipy"]
                    curve = [(r[f"{part}_nfe"], r[err]) for r in sc]
                    for r, s_ in zip(case["runs"][label], sc):
                        e_ratio.append(r[err] / s_[err])
                        n_ratio.append(r[f"{part}_nfe"] / s_[f"{part}_nfe"])
                        wp.append(r[err] / at_nfe(curve, r[f"{part}_nfe"]))
                out[part] = {"error_ratio_equal_tol": geomean(e_ratio), "nfe_ratio_equal_tol": geomean(n_ratio),
                             "error_ratio_equal_nfe": geomean(wp),
                             "share_error_le_reference": sum(v <= 1 for v in e_ratio) / len(e_ratio),
                             "worst_error_ratio_equal_tol": max(e_ratio), "cases": len(e_ratio)}
                print(f"{group:8s} {label:16s} {part:10s} equal tol: error x{out[part]['error_ratio_equal_tol']:.2f} "
                      f"NFE x{out[part]['nfe_ratio_equal_tol']:.2f}; equal NFE: error "
                      f"x{out[part]['error_ratio_equal_nfe']:.2f}; error <= reference in "
                      f"{out[part]['share_error_le_reference']:.0%}", flush=True)
            summary.setdefault(group, {})[label] = out
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "ode_accuracy.json"), "w") as f:
        json.dump({"problem": f"{D}-D 5-component mixture (make_mixture('random', seed)), float64, B={B}",
                   "part1_vp_seed0": rows, "part2_summary_vs_scipy_rk45": summary, "part2_cases": cases},
                  f, indent=1)


if __name__ == "__main__":
    main()
