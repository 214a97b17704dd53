"""Benchmark: accuracy per NFE of the probability-flow ODE, torchdiffeq vs scipy's RK45.

On a 16-D, 5-component Gaussian mixture with its exact score under the VP SDE (float64,
100 samples), at rtol = atol = tol:

* endpoint: x_T ~ N(0, I) integrated from T to eps; RMS error over the batch (and the
  worst sample's error norm) against dopri8 at 1e-12;
* likelihood: log p_eps(x) of mixture samples by `solvers.log_likelihood` (exact trace),
  the prior replaced by the exact log p_T so that only solver error remains; mean
  absolute error against the closed form.

Rows: scipy `solve_ivp(method="RK45")` on the whole batch flattened into one vector
(what the reference implementation does; the augmented state joins x and the B
log-density increments into one RMS norm), and torchdiffeq dopri5 with each error norm
of `solvers` (`norm="batch"`, `"sample"`, `"mixed"`).

    python bench/ode_accuracy.py         # ~2 minutes on one core
    -> bench/results/ode_accuracy.json

Writes numbers, asserts nothing (see tests/test_ode_norm.py for the checks).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
from scipy.integrate import solve_ivp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.analytic import make_mixture  # noqa: E402
from sde_lib import VPSDE  # noqa: E402
from solvers import CountedScore, log_likelihood  # noqa: E402
from solvers.ode import ODE_NORMS, odeint_flow  # noqa: E402

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


def main():
    torch.set_num_threads(1)
    gm = make_mixture("random", D=D, K=5, generator=torch.Generator().manual_seed(0))
    sde = VPSDE()
    score = gm.score_fn(sde)
    xT = sde.prior_sampling((B, D), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = odeint_flow(sde, score, xT, sde.T, sde.eps, "dopri8", 1e-12, 1e-12)[0][-1]
    x = gm.sample(B, generator=torch.Generator().manual_seed(2))
    truth = gm.log_prob_t(sde, x, torch.full((B,), sde.eps, dtype=x.dtype))
    pT = gm.marginal(sde, sde.T)

    def end_err(y):
        e = (y - ref).reshape(B, -1)
        return e.pow(2).mean().sqrt().item(), e.norm(dim=1).max().item()

    rows = []
    for tol in TOLS:
        c = CountedScore(score)
        e = end_err(scipy_endpoint(sde, c, xT, tol))
        z, delta, nfev = scipy_likelihood(sde, score, x, tol)
        lerr = (pT.log_prob(z) + delta - truth).abs()
        rows.append({"solver": "scipy RK45 (flat batch)", "tol": tol, "endpoint_nfe": c.nfe, "endpoint_rms": e[0],
                     "endpoint_worst": e[1], "likelihood_nfe": nfev, "likelihood_mae": lerr.mean().item(),
                     "likelihood_worst": lerr.max().item()})
        for norm in ODE_NORMS:
            c = CountedScore(score)
            e = end_err(odeint_flow(sde, c, xT, sde.T, sde.eps, "dopri5", tol, tol, norm=norm)[0][-1])
            res = log_likelihood(sde, score, x, trace="exact", rtol=tol, atol=tol, norm=norm)
            lerr = (pT.log_prob(res.z) + res.delta_logp - truth).abs()
            rows.append({"solver": f"torchdiffeq dopri5, norm={norm}", "tol": tol, "endpoint_nfe": c.nfe,
                         "endpoint_rms": e[0], "endpoint_worst": e[1], "likelihood_nfe": res.nfe,
                         "likelihood_mae": lerr.mean().item(), "likelihood_worst": lerr.max().item()})
        for r in rows[-1 - len(ODE_NORMS):]:
            print(f"{r['tol']:.0e} {r['solver']:<34} endpoint nfe {r['endpoint_nfe']:4d} rms {r['endpoint_rms']:.2e} "
                  f"worst {r['endpoint_worst']:.2e} | likelihood nfe {r['likelihood_nfe']:4d} "
                  f"mae {r['likelihood_mae']:.2e} worst {r['likelihood_worst']:.2e}", flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "ode_accuracy.json"), "w") as f:
        json.dump({"problem": f"{D}-D 5-component mixture (make_mixture('random', seed 0)), VP, float64, B={B}",
                   "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
