"""Benchmark: every sampler against the exact Gaussian-mixture score.

For each sampler and a range of NFE budgets: sliced Wasserstein-1 distance
between its samples and fresh samples of the true mixture, and wall time.
Then the per-step overhead of the framework against a bare loop that only
calls score_fn, and the cost of per-sample seeds.

    python bench/samplers_gmm.py            # ~3 minutes on 2 CPU cores
    -> bench/results/samplers_gmm.json, bench/results/samplers_gmm.png

Writes numbers, asserts nothing (see tests/ for the checks).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.analytic import make_mixture  # noqa: E402
from sde_lib import VPSDE  # noqa: E402
from solvers import sample, sliced_wasserstein  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
N, D = 2000, 4

CONFIGS = [
    # label, sampler, fixed options, the knob, its values
    ("euler_maruyama", "euler_maruyama", {}, "steps", [10, 25, 50, 100, 250, 500]),
    ("ancestral (DDPM)", "ancestral", {}, "steps", [10, 25, 50, 100, 250, 500]),
    ("reverse_diffusion", "reverse_diffusion", {}, "steps", [10, 25, 50, 100, 250, 500]),
    ("pc: rev.diff + annealed Langevin", "pc", {"predictor": "reverse_diffusion", "corrector": "annealed_langevin",
                                               "step_size": 0.1}, "steps", [5, 12, 25, 50, 125, 250]),
    ("ddim", "ddim", {}, "steps", [5, 10, 25, 50, 100]),
    ("heun (PF ODE)", "heun", {}, "steps", [3, 5, 12, 25, 50]),
    ("ode rk4", "ode", {"method": "rk4"}, "steps", [2, 3, 6, 12, 25]),
    ("ode dopri5", "ode", {"method": "dopri5"}, "tol", [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]),
    ("torchsde euler", "sde", {"method": "euler"}, "steps", [10, 50, 250]),
    ("torchsde srk", "sde", {"method": "srk"}, "steps", [3, 10, 25]),
]


def sw_to_truth(x, gm, seed):
    g = torch.Generator().manual_seed(seed)
    refs = [gm.sample(N, generator=g) for _ in range(2)]
    proj = lambda: torch.Generator().manual_seed(0)
    return sum(sliced_wasserstein(x, r, generator=proj()) for r in refs) / len(refs)


def main():
    # The mixture score's softmax underflows to subnormal floats far from the modes, and
    # subnormal arithmetic is ~30x slower on x86: flush them so timings measure the method.
    torch.set_flush_denormal(True)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    torch.manual_seed(0)
    gm = make_mixture("random", D=D, K=3, scale=2.0, std=0.5, generator=torch.Generator().manual_seed(3))
    sde = VPSDE()
    sf = gm.score_fn(sde)
    g = torch.Generator().manual_seed(100)
    floor = [sliced_wasserstein(gm.sample(N, generator=g), gm.sample(N, generator=g),
                                generator=torch.Generator().manual_seed(0)) for _ in range(5)]
    results = {"setup": {"mixture": "random D=4 K=3 scale=2 std=0.5 (seed 3)", "sde": repr(sde), "n_samples": N,
                         "dtype": "float32", "threads": torch.get_num_threads(), "torch": torch.__version__,
                         "machine": platform.processor() or platform.machine()},
               "sw_floor": sum(floor) / len(floor), "samplers": {}}
    for label, name, fixed, knob, values in CONFIGS:
        rows = []
        for v in values:
            opts = dict(fixed)
            if knob == "tol":
                opts.update(rtol=v, atol=v)
            else:
                opts[knob] = v
            t0 = time.perf_counter()
            x, info = sample(sde, sf, (N, D), name, generator=torch.Generator().manual_seed(1), **opts)
            secs = time.perf_counter() - t0
            sw = sw_to_truth(x, gm, seed=7)
            rows.append({knob: v, "nfe": info.nfe, "sw1": sw, "seconds": secs})
            print(f"{label:34s} {knob}={v:<8g} nfe={info.nfe:5d} SW1={sw:.4f} {secs:6.2f}s", flush=True)
        results["samplers"][label] = rows

    # ---- overhead: framework step vs the bare score call ---------------------------------
    steps = 500
    over = {}
    for score_name, fn in [("mixture score", sf), ("trivial score (-x)", lambda x, t: -x)]:
        x = sde.prior_sampling((N, D), generator=torch.Generator().manual_seed(0))
        ts = torch.linspace(1.0, sde.eps, steps + 1)
        with torch.no_grad():
            fn(x, ts[0].expand(N))
            t0 = time.perf_counter()
            for i in range(steps):
                fn(x, ts[i].expand(N))
            bare = time.perf_counter() - t0
        t0 = time.perf_counter()
        sample(sde, fn, (N, D), "euler_maruyama", steps=steps, generator=torch.Generator().manual_seed(0))
        em = time.perf_counter() - t0
        t0 = time.perf_counter()
        sample(sde, fn, (N, D), "euler_maruyama", steps=steps, seeds=list(range(N)))
        seeded = time.perf_counter() - t0
        over[score_name] = {"steps": steps, "batch": N, "bare_loop_s": bare, "euler_maruyama_s": em,
                            "ratio": em / bare, "overhead_us_per_step": (em - bare) / steps * 1e6,
                            "euler_maruyama_seeds_s": seeded,
                            "seeds_overhead_us_per_step": (seeded - em) / steps * 1e6}
        print(score_name, json.dumps(over[score_name]), flush=True)
    results["overhead"] = over

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "samplers_gmm.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results)


def plot(results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for label, rows in results["samplers"].items():
        ax.plot([r["nfe"] for r in rows], [r["sw1"] for r in rows], marker="o", ms=3, label=label)
    ax.axhline(results["sw_floor"], color="k", ls="--", lw=1, label="two true sample sets")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("score evaluations (NFE)")
    ax.set_ylabel("sliced W1 to the true mixture")
    ax.set_title("Samplers on a 4-D Gaussian mixture, exact score, VP SDE")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "samplers_gmm.png"), dpi=120)


if __name__ == "__main__":
    main()
