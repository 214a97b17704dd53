"""Benchmark: the fast samplers at 10-20 NFE on a 24-D, 6-component anisotropic mixture (exact score).

For VP and VE, each configuration (sampler, order, B(h), schedule, eps/denoise) at a
budget of 10, 15 and 20 NFE (denoising counts 1) draws n samples from one fixed set of
prior draws x_T, and reports

  dlogp      mean log p_0(samples) - mean log p_0(an independent true sample), +- SE;
  vs_base    the paired difference to plain DPM-Solver++(2M) on the log-SNR grid at the
             same NFE from the same x_T: mean_i [log p_0(x_i) - log p_0(x_i^base)], +- its SE
             (much smaller than the SE of dlogp, as the x_T are shared).

Reference rows: a second true sample (dlogp floor, 0 +- SE) and the adaptive
probability-flow ODE (dopri5, rtol = atol = 1e-5).

Also the empirical convergence order of every deterministic fast sampler: the slope of
log(pathwise RMS error) against log(steps), steps 16, 32, 64 on the log-SNR grid, against
a float64 dopri8 solution (tol 1e-10) from the same 200 x_T, on a smooth 2-D problem (two
overlapping components), as in tests/test_fast_samplers.py. And the schedule rows again
on two other draws of the mixture (seeds 1, 2; 6000 samples).

    python bench/fast_samplers_gmm.py          # ~3 minutes on one core
    -> bench/results/fast_samplers_gmm.json, bench/results/fast_samplers_gmm.png

Writes numbers, asserts nothing (tests/test_fast_samplers.py has the checks).
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.analytic import make_mixture  # noqa: E402
from sde_lib import VESDE, VPSDE  # noqa: E402
from solvers import sample  # noqa: E402
from solvers.metrics import convergence_order, dlogp, pathwise_rms, reference_flow  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
N, D, K = 10000, 24, 6
BUDGETS = [10, 15, 20]
BASE = "dpmpp_2m"
CONFIGS = [  # label, sampler, options, NFE per step
    ("dpmpp_2m", "dpmpp_2m", {}, 1),
    ("dpmpp_2m lower_order_final=False", "dpmpp_2m", {"lower_order_final": False}, 1),
    ("dpmpp_2m karras rho=15", "dpmpp_2m", {"schedule": "karras", "rho": 15.0}, 1),
    ("dpmpp_3m", "dpmpp_3m", {}, 1),
    ("dpm_solver-3 (singlestep)", "dpm_solver", {"order": 3}, 3),
    ("dpmpp_2m_sde eta=1", "dpmpp_2m_sde", {"eta": 1.0}, 1),
    ("unipc-2 bh1", "unipc", {"order": 2, "variant": "bh1"}, 1),
    ("unipc-2 bh2", "unipc", {"order": 2, "variant": "bh2"}, 1),
    ("unipc-3 bh1", "unipc", {"order": 3, "variant": "bh1"}, 1),
    ("unipc-3 bh2 (default)", "unipc", {}, 1),
    ("unipc-3 karras rho=7", "unipc", {"schedule": "karras", "rho": 7.0}, 1),
    ("unipc-3 karras rho=15", "unipc", {"schedule": "karras", "rho": 15.0}, 1),
    ("unipc-3 karras rho=30", "unipc", {"schedule": "karras", "rho": 30.0}, 1),
    ("unipc-3 eps=3e-3 + denoise", "unipc", {"eps": 3e-3, "denoise": True}, 1),
]


ORDERS = [  # label, sampler, options, theory
    ("dpm_solver-1 (= DDIM)", "dpm_solver", {"order": 1}, 1),
    ("dpm_solver-2", "dpm_solver", {"order": 2}, 2),
    ("dpm_solver-3", "dpm_solver", {"order": 3}, 3),
    ("dpmpp_2m", "dpmpp_2m", {}, 2),
    ("dpmpp_3m", "dpmpp_3m", {}, 3),
    ("unipc-1 bh1", "unipc", {"order": 1, "variant": "bh1"}, 2),
    ("unipc-2 bh2", "unipc", {"order": 2, "variant": "bh2"}, 3),
    ("unipc-3 bh2", "unipc", {"order": 3, "variant": "bh2"}, 4),
]


def orders():
    gm = make_mixture("random", D=2, K=2, scale=0.5, std=0.5, generator=torch.Generator().manual_seed(3))
    steps = [16, 32, 64]
    out = {}
    for sde in (VPSDE(), VESDE()):
        name = type(sde).__name__.replace("SDE", "")      # VP | VE
        sf = gm.score_fn(sde)
        x_T = sde.prior_sampling((200, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ref = reference_flow(sde, sf, x_T)
        for label, sampler, opts, theory in ORDERS:
            errs = [pathwise_rms(sample(sde, sf, None, sampler, x_T=x_T, steps=k, **opts)[0], ref) for k in steps]
            p = convergence_order(steps, errs)
            out.setdefault(label, {"theory": theory})[name] = {"order": p, "errors": errs}
            print(f"order {name} {label:24s} {p:.2f} (theory {theory}) errors {errs}", flush=True)
    return {"steps": steps, "problem": "make_mixture('random', D=2, K=2, scale=0.5, std=0.5, seed 3), 200 paths, "
                                      "logsnr grid, reference dopri8 tol 1e-10, float64", "rows": out}


ROBUST = [("dpmpp_2m", "dpmpp_2m", {}), ("unipc-3 (logsnr)", "unipc", {}),
          ("unipc-3 karras rho=7", "unipc", {"schedule": "karras", "rho": 7.0}),
          ("unipc-3 karras rho=15", "unipc", {"schedule": "karras", "rho": 15.0}),
          ("unipc-3 karras rho=30", "unipc", {"schedule": "karras", "rho": 30.0})]


def robustness(n=6000):
    """The schedule choice on two other draws of the mixture (seeds 1, 2) at 15 and 20 NFE."""
    out = {}
    for seed in (1, 2):
        gm = make_mixture("random", D=D, K=K, scale=2.0, std=0.5, generator=torch.Generator().manual_seed(seed))
        ref = gm.sample(n, generator=torch.Generator().manual_seed(1))
        for sde in (VPSDE(), VESDE()):
            name = type(sde).__name__.replace("SDE", "")      # VP | VE
            sf = gm.score_fn(sde)
            x_T = sde.prior_sampling((n, D), generator=torch.Generator().manual_seed(2))
            for label, sampler, opts in ROBUST:
                for nfe in (15, 20):
                    x, _ = sample(sde, sf, None, sampler, x_T=x_T, steps=nfe, **opts)
                    d = dlogp(x, gm.log_prob, ref)
                    out.setdefault(f"seed {seed} {name}", {}).setdefault(label, []).append(
                        {"nfe": nfe, "dlogp": d.value, "se": d.se})
                    print(f"robust seed {seed} {name} {label:24s} nfe={nfe} dlogp={d.value:+.3f} +- {d.se:.3f}",
                          flush=True)
    return {"n_samples": n, "rows": out}


def paired(lx, lb):
    d = lx - lb
    return d.mean().item(), (d.std() / math.sqrt(d.numel())).item()


def main():
    torch.set_flush_denormal(True)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    gm = make_mixture("random", D=D, K=K, scale=2.0, std=0.5, generator=torch.Generator().manual_seed(0))
    ref = gm.sample(N, generator=torch.Generator().manual_seed(1))
    floor = dlogp(gm.sample(N, generator=torch.Generator().manual_seed(5)), gm.log_prob, ref)
    results = {"setup": {"mixture": f"make_mixture('random', D={D}, K={K}, scale=2.0, std=0.5, seed 0): "
                                    "full covariances with eigenvalues in [0.0625, 0.25]",
                         "n_samples": N, "dtype": "float32", "grid_default": "logsnr", "eps_default": "sde.eps",
                         "threads": torch.get_num_threads(), "torch": torch.__version__,
                         "machine": platform.processor() or platform.machine()},
               "floor": {"dlogp": floor.value, "se": floor.se}, "sdes": {}}
    for sde in (VPSDE(), VESDE()):
        name = type(sde).__name__.replace("SDE", "")      # VP | VE
        sf = gm.score_fn(sde)
        x_T = sde.prior_sampling((N, D), generator=torch.Generator().manual_seed(2))
        rows = {}
        t0 = time.perf_counter()
        x, info = sample(sde, sf, None, "ode", x_T=x_T, method="dopri5", rtol=1e-5, atol=1e-5)
        d = dlogp(x, gm.log_prob, ref)
        rows["ode dopri5 1e-5"] = [{"nfe": info.nfe, "dlogp": d.value, "se": d.se,
                                    "seconds": time.perf_counter() - t0}]
        base = {}
        for label, sampler, opts, per_step in CONFIGS:
            rows[label] = []
            for nfe in BUDGETS:
                steps = (nfe - (1 if opts.get("denoise") else 0)) // per_step
                x, info = sample(sde, sf, None, sampler, x_T=x_T, steps=steps,
                                 generator=torch.Generator().manual_seed(3), **opts)
                lx = gm.log_prob(x).double()
                if label == BASE:
                    base[nfe] = lx
                d = dlogp(x, gm.log_prob, ref)
                vs, vs_se = paired(lx, base[nfe])
                rows[label].append({"nfe": info.nfe, "steps": steps, "dlogp": d.value, "se": d.se,
                                    "vs_base": vs, "vs_base_se": vs_se})
                print(f"{name} {label:28s} nfe={info.nfe:3d} dlogp={d.value:+.3f} +- {d.se:.3f} "
                      f"vs 2M {vs:+.3f} +- {vs_se:.3f}", flush=True)
        results["sdes"][name] = {"sde": repr(sde), "rows": rows}
    results["orders"] = orders()
    results["robustness"] = robustness()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "fast_samplers_gmm.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results)


def plot(results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, (name, res) in zip(axes, results["sdes"].items()):
        for label, rows in res["rows"].items():
            if label.startswith("ode"):
                continue
            ax.errorbar([r["nfe"] for r in rows], [r["dlogp"] for r in rows], yerr=[r["se"] for r in rows],
                        marker="o", capsize=2, label=label)
        ax.axhspan(-0.3, 0.3, color="0.9", zorder=0)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylim(-2, 1)
        ax.set_title(f"{name}: 24-D, 6-component mixture, exact score")
        ax.set_xlabel("NFE")
    axes[0].set_ylabel("dlogp (nats; 0 = true samples, shaded: |dlogp| <= 0.3)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "fast_samplers_gmm.png"), dpi=110)


if __name__ == "__main__":
    main()
