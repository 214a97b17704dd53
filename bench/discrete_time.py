"""Discrete-time models in continuous time: the log-SNR mismatch of the clamp below DDPM's first
step, and what it does to a likelihood (models/discrete.py).

Part 1: DDPM's 1000-step chain (beta 1e-4..0.02, `VPSDE().discrete_log_snrs()`) against the VP
SDE (beta 0.1..20): lambda_0 of the first step, and for t = 1e-3 (VP's eps), 1e-4, 1e-5 the
SDE's lambda(t), the label k(t) the wrapper gives and the mismatch lambda(t) - lambda(k(t)).

Part 2: the exact-mixture stand-in for a DDPM eps network (`discrete_eps_oracle`: the exact eps
at the 1000 steps, linear in k between) through the wrapper (`model.label = discrete_step`,
`model.prediction = eps`), against the exact score: log p_eps(x) by the probability-flow ODE
(exact trace, rtol = atol = 1e-6), at eps = 1e-3 and 1e-5, on n test points of two mixtures in
D = 4: a smooth one (component std 0.3) and a fine one (std 0.01, structure at the scale of
8-bit pixel bins, 2/256). The difference is paired (same points, same solver), reported in
nats per example and bits/dim with its standard error over points.

    OMP_NUM_THREADS=1 python bench/discrete_time.py [--n 64]

Writes bench/results/discrete_time.json. CPU, 1 thread, about 3 minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from models import GaussianMixture, Parameterization  # noqa: E402
from models.discrete import DiscreteTimeLabel, discrete_eps_oracle  # noqa: E402
from sde_lib import VPSDE  # noqa: E402
from solvers import log_likelihood  # noqa: E402

TIMES = (1e-3, 1e-4, 1e-5)


def mismatch_table(sde):
    table = sde.discrete_log_snrs()
    d = DiscreteTimeLabel(table)
    t = torch.tensor(TIMES, dtype=torch.float64)
    lam = sde.log_snr(t)
    rows = [{"t": ti, "log_snr": li, "step": ki, "mismatch": mi, "sigma": math.exp(-li),
             "sigma_told": math.exp(-(li - mi))}
            for ti, li, ki, mi in zip(TIMES, lam.tolist(), d.step(lam).tolist(), d.mismatch(lam).tolist())]
    t0 = sde.t_from_log_snr(table[:1]).item()
    return {"lambda_0": table[0].item(), "sigma_0": math.exp(-table[0].item()), "t_of_first_step": t0,
            "lambda_last": table[-1].item(), "lambda_T": sde.log_snr(torch.tensor([1.0], dtype=torch.float64)).item(),
            "rows": rows}


def mixture(std, D=4, K=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = 0.6 * torch.randn(K, D, generator=g, dtype=torch.float64)
    return GaussianMixture(torch.ones(K, dtype=torch.float64), means,
                           torch.full((K, D), std ** 2, dtype=torch.float64))


def likelihood_effect(sde, gm, n, eps):
    g = torch.Generator().manual_seed(1)
    x = gm.marginal(sde, eps).sample(n, g)
    exact = gm.score_fn(sde)
    p = Parameterization(sde, "eps", "discrete_step")
    net = discrete_eps_oracle(gm, sde.discrete_log_snrs())

    def discrete(xx, tt):
        return p(net, xx, tt)
    kw = dict(trace="exact", rtol=1e-6, atol=1e-6, eps=eps)
    a = log_likelihood(sde, exact, x, **kw).logp
    b = log_likelihood(sde, discrete, x, **kw).logp
    d = (b - a).double()
    D = x.shape[1]
    se = (d.std() / math.sqrt(n)).item()
    return {"eps": eps, "n": n, "D": D, "logp_exact_mean": a.mean().item(),
            "dlogp_nats": d.mean().item(), "dlogp_nats_stderr": se,
            "dbits_per_dim": -d.mean().item() / (D * math.log(2)), "dbits_per_dim_stderr": se / (D * math.log(2)),
            "max_abs_dlogp_nats": d.abs().max().item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "discrete_time.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    sde = VPSDE()
    t0 = time.time()
    out = {"command": "OMP_NUM_THREADS=1 python bench/discrete_time.py --n %d" % args.n,
           "chain": "DDPM 1000 steps, beta 1e-4..0.02; SDE: VP beta 0.1..20",
           "mismatch": mismatch_table(sde), "likelihood": []}
    for name, std in (("smooth (std 0.3)", 0.3), ("fine (std 0.01)", 0.01)):
        for eps in (1e-3, 1e-5):
            row = likelihood_effect(sde, mixture(std), args.n, eps)
            row["mixture"] = name
            out["likelihood"].append(row)
            print(f"{name:18s} eps={eps:g}: dlogp = {row['dlogp_nats']:+.5f} +- {row['dlogp_nats_stderr']:.5f} nats"
                  f" ({row['dbits_per_dim']:+.6f} +- {row['dbits_per_dim_stderr']:.6f} bits/dim)", flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    m = out["mismatch"]
    print(f"lambda_0 = {m['lambda_0']:.4f} (sigma_0 = {m['sigma_0']:.6f}, t = {m['t_of_first_step']:.3e})")
    for r in m["rows"]:
        print(f"t = {r['t']:g}: lambda = {r['log_snr']:.4f}, k = {r['step']:.4f}, mismatch = {r['mismatch']:.4f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
