"""Benchmark: every registered sampler against the exact score of a 24-D Gaussian mixture.

For VP and VE, every sampler of `solvers.SAMPLERS` (fixed-grid ones at several
grids, the adaptive ODE at several tolerances) is run at NFE budgets from 5 to
1000 from the *same* prior draw x_T, and scored against the true mixture with

* dlogp: mean log p_0(samples) - mean log p_0(true samples), with its standard error
  (negative = blur, positive = collapse onto the modes); the true reference set is
  10x larger than the sample so the SE is mostly the sampler's own;
* sliced W1 to a fresh true sample, component-frequency TV, mean and covariance error;
* for deterministic samplers: pathwise RMS error against a float64 dopri8 solution
  (rtol = atol = 1e-10) of the probability-flow ODE from the same x_T, the empirical
  order (slope over the three largest budgets), and the paired `dlogp_flow` = mean of
  log p_0(x_i) - log p_0(flow_i) over the same x_T: the part of dlogp due to
  discretisation alone, free of the sampling noise of x_T (its SE is from the pairs).

Reference rows: two true sample sets (sliced W1 floor; dlogp ~ 0 within its SE).

    python bench/samplers_gmm.py          # ~10 min at 1 thread on 2 CPU cores (BENCH_N=3000)
    python bench/samplers_gmm.py --table  # print the tables of docs/bench/samplers-gmm.md from the saved JSON
    -> bench/results/samplers_gmm.json, bench/results/samplers_gmm.png

Writes numbers, asserts nothing (see tests/ for the checks).
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
from solvers import SAMPLERS, sample  # noqa: E402
from solvers.metrics import mixture_metrics, pathwise_rms, reference_flow, convergence_order, dlogp  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
N = int(os.environ.get("BENCH_N", "3000"))
D, K = 24, 6
FAST = [5, 10, 15, 20, 50, 100, 200]
SLOW = [10, 20, 50, 100, 200, 500, 1000]
TOLS = [1e-2, 1e-3, 1e-4, 1e-5]

# label, sampler, options, NFE per step, budgets, deterministic
CONFIGS = [
    ("ddim", "ddim", {}, 1, FAST, True),
    ("heun", "heun", {}, 2, FAST, True),
    ("edm", "edm", {}, 2, FAST, True),
    ("edm, logSNR grid", "edm", {"schedule": "logsnr"}, 2, FAST, True),
    ("dpm_solver-2", "dpm_solver", {"order": 2}, 2, FAST, True),
    ("dpm_solver-3", "dpm_solver", {"order": 3}, 3, FAST, True),
    ("dpmpp_2m", "dpmpp_2m", {}, 1, FAST, True),
    ("dpmpp_3m", "dpmpp_3m", {}, 1, FAST, True),
    ("unipc-2 bh1", "unipc", {"order": 2, "variant": "bh1"}, 1, FAST, True),
    ("unipc-3 bh2", "unipc", {"order": 3, "variant": "bh2"}, 1, FAST, True),
    ("ode dopri5", "ode", {"method": "dopri5"}, None, TOLS, True),
    ("euler_maruyama", "euler_maruyama", {}, 1, SLOW, False),
    ("ancestral", "ancestral", {}, 1, SLOW, False),
    ("reverse_diffusion", "reverse_diffusion", {}, 1, SLOW, False),
    ("pc (rev. diff. + Langevin)", "pc", {}, 2, SLOW, False),
    ("ddim eta=1", "ddim", {"eta": 1.0}, 1, SLOW, False),
    ("euler_ancestral", "euler_ancestral", {}, 1, SLOW, False),
    ("edm churn", "edm", {"S_churn": 10.0, "S_tmin": 0.05, "S_tmax": 50.0, "S_noise": 1.003}, 2, SLOW, False),
    ("dpmpp_2m_sde", "dpmpp_2m_sde", {}, 1, SLOW, False),
    ("annealed_langevin (NCSN)", "annealed_langevin", {}, 1, SLOW, False),
    ("sde (torchsde euler)", "sde", {"method": "euler"}, 1, [10, 100, 1000], False),
]


def run_sde(sde_name, sde, gm, results):
    sf = gm.score_fn(sde)
    gen = torch.Generator().manual_seed(11)
    ref_big = gm.sample(10 * N, generator=gen)
    x_T = sde.prior_sampling((N, D), generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    flow = reference_flow(sde, sf, x_T)
    flow_logp = gm.log_prob(flow)
    print(f"{sde_name}: reference flow on {N} paths in {time.perf_counter() - t0:.1f}s", flush=True)
    true = gm.sample(N, generator=gen)
    floor = mixture_metrics(true, gm, generator=torch.Generator().manual_seed(7))
    ref_logp = gm.log_prob(ref_big)
    ref_lp = lambda x: ref_logp if x is ref_big else gm.log_prob(x)   # noqa: E731  (evaluate the big set once)
    d = dlogp(true, ref_lp, ref_big)
    floor.update(dlogp=d.value, dlogp_se=d.se)
    d = dlogp(flow, ref_lp, ref_big)
    out_flow = {"dlogp": d.value, "dlogp_se": d.se}
    out = {"floor": floor, "flow": out_flow, "samplers": {}}
    for label, name, fixed, per_step, budgets, deterministic in CONFIGS:
        if name not in SAMPLERS:
            print(f"skip {label}: sampler {name!r} not registered", flush=True)
            continue
        rows = []
        for b in budgets:
            opts = dict(fixed)
            if per_step is None:
                opts.update(rtol=b, atol=b)
            else:
                opts["steps"] = max(1, round(b / per_step))
            t0 = time.perf_counter()
            x, info = sample(sde, sf, None, name, x_T=x_T, generator=torch.Generator().manual_seed(2), **opts)
            secs = time.perf_counter() - t0
            r = mixture_metrics(x, gm, generator=torch.Generator().manual_seed(7))
            d = dlogp(x, ref_lp, ref_big)
            r.update(dlogp=d.value, dlogp_se=d.se, nfe=info.nfe, seconds=secs,
                     **({"tol": b} if per_step is None else {"steps": opts["steps"]}))
            if deterministic:
                r["path_rms"] = pathwise_rms(x, flow)
                diff = gm.log_prob(x).double() - flow_logp.double()
                r["dlogp_flow"] = diff.mean().item()
                r["dlogp_flow_se"] = (diff.var() / diff.numel()).sqrt().item()
            rows.append(r)
            print(f"{sde_name} {label:28s} nfe={info.nfe:5d} dlogp={r['dlogp']:+.3f}±{r['dlogp_se']:.3f} "
                  f"SW1={r['sw1']:.4f} TV={r['tv']:.3f} path={r.get('path_rms', float('nan')):.2e} "
                  f"{secs:6.1f}s", flush=True)
        entry = {"sampler": name, "options": fixed, "deterministic": deterministic, "rows": rows}
        if deterministic and per_step is not None:
            tail = rows[-3:]
            try:
                entry["order"] = convergence_order([r["steps"] for r in tail], [r["path_rms"] for r in tail])
            except ValueError:
                entry["order"] = None
        out["samplers"][label] = entry
    results[sde_name] = out


def main():
    torch.set_flush_denormal(True)   # the mixture softmax underflows far from the modes
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    gm = make_mixture("random", D=D, K=K, scale=1.0, std=0.5, generator=torch.Generator().manual_seed(3))
    results = {"setup": {"mixture": f"make_mixture('random', D={D}, K={K}, scale=1.0, std=0.5), seed 3: "
                                    f"anisotropic full covariances (eigenvalues 0.0625..0.25)",
                         "n_samples": N, "n_reference_dlogp": 10 * N, "dtype": "float32",
                         "threads": torch.get_num_threads(), "torch": torch.__version__,
                         "machine": platform.processor() or platform.machine()}}
    start = time.perf_counter()
    for sde_name, sde in [("VP", VPSDE()), ("VE", VESDE())]:
        results["setup"][sde_name] = repr(sde)
        run_sde(sde_name, sde, gm, results)
    results["overhead"] = overhead()
    results["setup"]["total_seconds"] = time.perf_counter() - start
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "samplers_gmm.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results)
    print(table(results))
    print(table_flow(results))


def overhead(steps=500, n=2000):
    """Per-step cost of the framework against a bare loop of score calls (Euler-Maruyama,
    4-D mixture, batch 2000), and the extra cost of per-sample seeds."""
    gm = make_mixture("random", D=4, K=3, scale=2.0, std=0.5, generator=torch.Generator().manual_seed(3))
    sde = VPSDE()
    over = {}
    for score_name, fn in [("mixture score", gm.score_fn(sde)), ("trivial score (-x)", lambda x, t: -x)]:
        x = sde.prior_sampling((n, 4), generator=torch.Generator().manual_seed(0))
        ts = torch.linspace(1.0, sde.eps, steps + 1)
        with torch.no_grad():
            fn(x, ts[0].expand(n))
            t0 = time.perf_counter()
            for i in range(steps):
                fn(x, ts[i].expand(n))
            bare = time.perf_counter() - t0
        t0 = time.perf_counter()
        sample(sde, fn, (n, 4), "euler_maruyama", steps=steps, generator=torch.Generator().manual_seed(0))
        em = time.perf_counter() - t0
        t0 = time.perf_counter()
        sample(sde, fn, (n, 4), "euler_maruyama", steps=steps, seeds=list(range(n)))
        seeded = time.perf_counter() - t0
        over[score_name] = {"steps": steps, "batch": n, "bare_loop_s": bare, "euler_maruyama_s": em,
                            "ratio": em / bare, "overhead_us_per_step": (em - bare) / steps * 1e6,
                            "euler_maruyama_seeds_s": seeded,
                            "seeds_overhead_us_per_step": (seeded - em) / steps * 1e6}
        print(score_name, json.dumps(over[score_name]), flush=True)
    return over


def _at(rows, nfe):
    """The row whose NFE is closest to `nfe` (within a factor 1.5), else None."""
    best = min(rows, key=lambda r: abs(math.log(r["nfe"] / nfe)))
    return best if abs(math.log(best["nfe"] / nfe)) < math.log(1.5) else None


def table(results, budgets=(10, 20, 50, 200, 1000)):
    """Markdown table: dlogp (VP / VE) at the NFE nearest each budget (within a factor 1.5).
    (The fitted order stays in the JSON: on the mixture the pathwise RMS is dominated by the
    few paths that change component, so its slope is not the asymptotic order; the tests
    check orders on Gaussian data, where the flow is known.)"""
    head = "| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |"
    lines = [head, "|" + "---|" * (len(budgets) + 1)]
    labels = list(results["VP"]["samplers"])
    for label in labels:
        cells = []
        for b in budgets:
            parts = []
            for s in ("VP", "VE"):
                r = _at(results[s]["samplers"][label]["rows"], b)
                parts.append("–" if r is None else f"{r['dlogp']:+.2f}")
            cells.append(" / ".join(parts))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    fl = [results[s]["floor"] for s in ("VP", "VE")]
    lines.append(f"| *true sample (floor)* | {fl[0]['dlogp']:+.2f} / {fl[1]['dlogp']:+.2f} (SE {fl[0]['dlogp_se']:.2f}) "
                 + "| " * (len(budgets) - 1) + "|")
    if "flow" in results["VP"]:
        fw = [results[s]["flow"] for s in ("VP", "VE")]
        lines.append(f"| *exact PF-ODE flow of the same x_T* | {fw[0]['dlogp']:+.2f} / {fw[1]['dlogp']:+.2f} "
                     + "| " * (len(budgets) - 1) + "|")
    return "\n".join(lines)


def table_flow(results, budgets=(5, 10, 15, 20, 50)):
    """Markdown table for deterministic samplers: paired dlogp_flow ± SE (VP | VE) near each budget."""
    lines = ["| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |", "|" + "---|" * (len(budgets) + 1)]
    for label, e in results["VP"]["samplers"].items():
        if not e["deterministic"] or "dlogp_flow" not in e["rows"][0]:
            continue
        cells = []
        for b in budgets:
            parts = []
            for s in ("VP", "VE"):
                r = _at(results[s]["samplers"][label]["rows"], b)
                parts.append("–" if r is None else f"{r['dlogp_flow']:+.2f}±{r['dlogp_flow_se']:.2f}")
            cells.append(" / ".join(parts))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), sharex=True)
    cmap = plt.get_cmap("tab20")
    for j, s in enumerate(("VP", "VE")):
        for i, (label, e) in enumerate(results[s]["samplers"].items()):
            nfe = [r["nfe"] for r in e["rows"]]
            ls = "-" if e["deterministic"] else "--"
            axes[0, j].plot(nfe, [r["dlogp"] for r in e["rows"]], ls, marker="o", ms=3, color=cmap(i), label=label)
            axes[1, j].plot(nfe, [r["sw1"] for r in e["rows"]], ls, marker="o", ms=3, color=cmap(i), label=label)
        fl = results[s]["floor"]
        axes[0, j].axhspan(-2 * fl["dlogp_se"], 2 * fl["dlogp_se"], color="k", alpha=0.1, label="true sample ±2 SE")
        axes[0, j].axhline(0, color="k", lw=0.8)
        axes[0, j].set_ylim(-3, 1)
        axes[0, j].set_title(f"{s}: dlogp (nats) vs NFE, exact score, 24-D mixture")
        axes[1, j].axhline(fl["sw1"], color="k", ls=":", lw=1, label="two true sample sets")
        axes[1, j].set_yscale("log")
        axes[1, j].set_title(f"{s}: sliced W1 to the true mixture")
        for i in range(2):
            axes[i, j].set_xscale("log")
        axes[1, j].set_xlabel("score evaluations (NFE)")
    axes[0, 1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "samplers_gmm.png"), dpi=110)


if __name__ == "__main__":
    if "--table" in sys.argv:
        with open(os.path.join(OUT, "samplers_gmm.json")) as f:
            res = json.load(f)
        print(table(res))
        print(table_flow(res))
    else:
        main()
