"""The sampler table: every registered sampler, from the registry and measured on the exact oracle.

For each registered sampler (with its default options) and a few named variants:

  grid            the default time grid (registry); "own" for self-stepping samplers
  NFE             score evaluations per step and fixed extra ("+1": a warm-up or check call),
                  measured from info.nfe at 8 and 16 steps
  order           in theory, and measured: minus the slope of log(pathwise RMS error) against
                  log(steps) at 16, 32, 64 steps (NFE 48, 96, 192 for DPM-Solver-fast) from the same
                  200 x_T against a float64 dopri8 solution (tol 1e-10), VP SDE, a smooth 2-D
                  mixture (two overlapping components), for the deterministic fixed-grid samplers;
                  for the stochastic ones the weak order: the error of the mean and variance on
                  1-D Gaussian data against the exact marginal (200k samples)
  stochastic      two noise generators from the same x_T give different endpoints
  batch-invariant sample i of a batch of 6 (per-sample seeds) equals sample i drawn alone (1e-12)
  matches         the official implementations it reproduces and the largest relative difference
                  (tests/data/sampler_goldens.npz, written by tools/make_sampler_goldens.py and
                  re-run here through the registry; tests/test_sampler_goldens.py checks the same)

and three measured sections: the agreement table (every golden pair), the two forms of
DPM-Solver++(3M) (orders on VP and VE over 16-64 and 40-320 steps; pathwise error and dlogp at
8/10/15/20 NFE on a 4-D mixture), and DPM-Solver-fast against DPM-Solver-3 at 9/10 and 18/20 NFE.

    python bench/sampler_table.py          # ~3 minutes on one core
    -> bench/results/sampler_table.json, docs/bench/sampler-table.md (text: bench/sampler_table_page.py)
    python bench/sampler_table.py --page   # only re-render the page from the JSON

Writes numbers, asserts nothing.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models.analytic import GaussianMixture, make_mixture  # noqa: E402
from sde_lib import VESDE, VPSDE  # noqa: E402
from solvers import SAMPLERS, sample  # noqa: E402
from solvers.metrics import convergence_order, dlogp, pathwise_rms, reference_flow  # noqa: E402
from solvers.sampling import GRID_OPTIONS  # noqa: E402

from sampler_table_page import markdown  # noqa: E402  (bench/, next to this file)

OUT_JSON = os.path.join(ROOT, "bench", "results", "sampler_table.json")
OUT_MD = os.path.join(ROOT, "docs", "bench", "sampler-table.md")

#: name -> (paper, order in theory) for the registry's samplers; variants below add their own.
PAPERS = {
    "euler_maruyama": ("Song et al. 2021 (reverse SDE, Euler-Maruyama)", "weak 1"),
    "pc": ("Song et al. 2021, Alg. 2-3 (predictor-corrector)", "weak 1 (predictor)"),
    "ancestral": ("Ho et al. 2020 (DDPM) / Song & Ermon 2019 posterior", "weak 1"),
    "reverse_diffusion": ("Song et al. 2021 (reverse diffusion predictor)", "weak 1"),
    "annealed_langevin": ("Song & Ermon 2019 (NCSN)", "- (Langevin: exact as steps -> inf)"),
    "ddim": ("Song, Meng & Ermon 2021 (DDIM)", "1"),
    "euler_ancestral": ("Karras et al. 2022 / k-diffusion", "weak 1"),
    "heun": ("Heun's method on the probability-flow ODE in t", "2"),
    "edm": ("Karras et al. 2022, Alg. 2 (EDM)", "2"),
    "ode": ("Song et al. 2021 (probability-flow ODE), adaptive RK45", "adaptive"),
    "sde": ("torchsde (Li et al. 2020), reverse SDE", "weak 1 (euler)"),
    "dpm_solver": ("Lu et al. 2022 (DPM-Solver), singlestep", "3"),
    "dpmpp_2m": ("Lu et al. 2022b (DPM-Solver++), Alg. 2", "2"),
    "dpmpp_3m": ("Lu et al. 2022b (DPM-Solver++), official code's 3M", "2 (reference form)"),
    "dpmpp_2m_sde": ("Lu et al. 2022b, Sec. 5 (SDE-DPM-Solver++(2M))", "weak 1 (eta > 0)"),
    "unipc": ("Zhao et al. 2023 (UniPC)", "4 (UniPC-3 + UniC)"),
}
VARIANTS = [  # label, sampler, options, paper, theory
    ("dpm_solver(order=1)", "dpm_solver", {"order": 1}, "Lu et al. 2022 (= DDIM)", "1"),
    ("dpm_solver(order=2)", "dpm_solver", {"order": 2}, "Lu et al. 2022", "2"),
    ("dpm_solver(split=fast)", "dpm_solver", {"split": "fast"}, "Lu et al. 2022, DPM-Solver-fast",
     "3 (steps = NFE)"),
    ("dpmpp_3m(variant=taylor)", "dpmpp_3m", {"variant": "taylor"}, "Taylor-consistent 3M (this project)", "3"),
    ("dpmpp_2m_sde(eta=0)", "dpmpp_2m_sde", {"eta": 0.0}, "= dpmpp_2m", "2"),
    ("unipc(order=2, variant=bh1)", "unipc", {"order": 2, "variant": "bh1"}, "Zhao et al. 2023 (official default)",
     "3"),
    ("ddim(eta=1)", "ddim", {"eta": 1.0}, "Song, Meng & Ermon 2021", "weak 1"),
]
MATCH_KEYS = ("order", "split", "variant", "eta", "solver_type")


def rows():
    out = [(name, name, {}, *PAPERS.get(name, (spec.doc, "?"))) for name, spec in SAMPLERS.items()]
    return out + VARIANTS


def resolved(name, opts):
    spec = SAMPLERS[name]
    return {k: v for k, v in {**spec.options, **opts}.items() if k not in GRID_OPTIONS}


# ---- golden pairs -------------------------------------------------------------------------------
def goldens():
    """Re-run every golden row through the registry (the test module's own runner):
    [{id, reference, sampler, options, resolved, nfe, rel, abs}]."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import test_sampler_goldens as T
    out = []
    for row in T.ROWS:
        ts, gold = torch.from_numpy(T.GOLD[row["id"] + "/ts"]), torch.from_numpy(T.GOLD[row["id"] + "/x"])
        x, nfe = T.run_on_grid(row, ts)
        out.append(dict(id=row["id"], reference=row["reference"], sampler=row["sampler"], options=row["options"],
                        resolved=resolved(row["sampler"], row["options"]), nfe=nfe, nfe_reference=row["nfe"],
                        tol=row["tol"], denoise=row["denoise"], seed=row["seed"], rel=T.rel_err(x, gold),
                        abs=(x - gold).abs().max().item()))
    return out


def matches(name, opts, pairs):
    want = resolved(name, opts)
    found = {}
    for p in pairs:
        if p["sampler"] == name and all(p["resolved"].get(k) == want.get(k) for k in MATCH_KEYS if k in want):
            ref = p["reference"].split(" (")[0].split(",")[0]
            found[ref] = max(found.get(ref, 0.0), p["rel"])
    return found


# ---- per-sampler measurements -------------------------------------------------------------------
def nfe_cost(sde, sf, name, opts):
    spec = SAMPLERS[name]
    if name == "ode" and opts.get("steps") is None:
        return "adaptive", None
    n = [sample(sde, sf, (4, 2), name, steps=k, generator=torch.Generator().manual_seed(0), **opts)[1].nfe
         for k in (8, 16)]
    per = (n[1] - n[0]) / 8
    extra = n[0] - per * 8
    return per, extra


def stochastic_and_batch(sde, sf, name, opts):
    x_T = sde.prior_sampling((6, 2), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    kw = dict(opts)
    if SAMPLERS[name].fixed_grid:
        kw.setdefault("steps", 8)
    a, _ = sample(sde, sf, None, name, x_T=x_T, generator=torch.Generator().manual_seed(1), **kw)
    b, _ = sample(sde, sf, None, name, x_T=x_T, generator=torch.Generator().manual_seed(2), **kw)
    seeds = [11, 12, 13, 14, 15, 16]
    batch, _ = sample(sde, sf, None, name, x_T=x_T, seeds=seeds, **kw)
    alone, _ = sample(sde, sf, None, name, x_T=x_T[3:4], seeds=seeds[3:4], **kw)
    return (not torch.allclose(a, b, rtol=0, atol=1e-12)), bool((batch[3] - alone[0]).abs().max() <= 1e-12)


def measured_order(order_problem, name, opts):
    sde, sf, x_T, ref = order_problem
    steps = [16, 32, 64]
    mult = 3 if opts.get("split") == "fast" else 1        # fast: steps is the NFE budget
    errs = [pathwise_rms(sample(sde, sf, None, name, x_T=x_T, steps=mult * k, **opts)[0], ref) for k in steps]
    return convergence_order(steps, errs), errs


def weak_order(name, opts, n=200_000):
    """Weak order of a stochastic sampler on Gaussian data N(0.5, 0.25) in 1-D under the VP SDE: the
    error |Var(x) - Var_eps| + |mean(x) - mean_eps| against the exact marginal at eps (Monte Carlo
    SE of the variance ~ 0.1% of it) at 16, 32, 64 steps."""
    sde = VPSDE()
    mu, lam = 0.5, 0.25
    gm = GaussianMixture(torch.ones(1), torch.tensor([[mu]], dtype=torch.float64),
                         torch.tensor([[lam]], dtype=torch.float64))
    m, s = (v.item() for v in sde.marginal_coeffs(torch.tensor([sde.eps], dtype=torch.float64)))
    steps, errs = [16, 32, 64], []
    for k in steps:
        x, _ = sample(sde, gm.score_fn(sde), (n, 1), name, steps=k, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(k), **opts)
        errs.append(abs(x.var().item() - (m * m * lam + s * s)) + abs(x.mean().item() - m * mu))
    return convergence_order(steps, errs), errs


def smooth_problem(sde):
    gm = make_mixture("random", D=2, K=2, scale=0.5, std=0.5, generator=torch.Generator().manual_seed(3))
    sf = gm.score_fn(sde)
    x_T = sde.prior_sampling((200, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sde, sf, x_T, reference_flow(sde, sf, x_T)


def table(pairs):
    op = smooth_problem(VPSDE())
    sde, sf = op[0], op[1]
    out = []
    for label, name, opts, paper, theory in rows():
        spec = SAMPLERS[name]
        per, extra = nfe_cost(sde, sf, name, opts)
        stoch, binv = stochastic_and_batch(sde, sf, name, opts)
        order, errs, weak = None, None, False
        if spec.fixed_grid and not stoch:
            order, errs = measured_order(op, name, opts)
        elif spec.fixed_grid:
            (order, errs), weak = weak_order(name, opts), True
        m = matches(name, opts, pairs)
        out.append(dict(label=label, sampler=name, options=opts, paper=paper, grid=spec.schedule or "own",
                        nfe_per_step=per, nfe_extra=extra, order_theory=theory, order_measured=order, weak=weak,
                        errors=errs, stochastic=stoch, batch_invariant=binv, matches=m))
        print(f"{label:30s} nfe {per}/{extra} order {order} stoch {stoch} batch-inv {binv} {m}", flush=True)
    return out


# ---- DPM-Solver++(3M): both forms ---------------------------------------------------------------
def mixture4():
    return make_mixture("random", D=4, K=3, scale=2.0, std=0.5, generator=torch.Generator().manual_seed(3))


def rms_se(x, ref):
    """Pathwise RMS and its standard error over paths (delta method on the mean squared error)."""
    sq = (x.double() - ref.double()).pow(2).mean(1)
    rms = sq.mean().sqrt().item()
    return rms, (sq.std().item() / math.sqrt(sq.numel())) / (2 * max(rms, 1e-300))


def three_m():
    out = {"orders": {}, "quality": {}, "paired": {}}
    for sde_name, sde in (("VP", VPSDE()), ("VE", VESDE())):
        sde_, sf, x_T, ref = smooth_problem(sde)
        for variant in ("reference", "taylor"):
            for rng in ([16, 32, 64], [40, 80, 160, 320]):
                errs = [pathwise_rms(sample(sde, sf, None, "dpmpp_3m", x_T=x_T, steps=k, variant=variant)[0], ref)
                        for k in rng]
                p = convergence_order(rng, errs)
                out["orders"].setdefault(variant, {}).setdefault(sde_name, []).append(
                    dict(steps=rng, order=p, errors=errs))
                print(f"3M {variant:9s} {sde_name} steps {rng}: order {p:.2f}", flush=True)
    gm = mixture4()
    n = 2000
    true = gm.sample(n, generator=torch.Generator().manual_seed(11))
    floor = dlogp(gm.sample(n, generator=torch.Generator().manual_seed(12)), gm.log_prob, true)
    out["quality_floor"] = dict(dlogp=floor.value, se=floor.se)
    for sde_name, sde in (("VP", VPSDE()), ("VE", VESDE())):
        sf = gm.score_fn(sde)
        x_T = sde.prior_sampling((n, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        ref = reference_flow(sde, sf, x_T)
        for nfe in (8, 10, 15, 20):
            xs = {}
            for variant in ("reference", "taylor"):
                xs[variant], _ = sample(sde, sf, None, "dpmpp_3m", x_T=x_T, steps=nfe, variant=variant)
                r, se = rms_se(xs[variant], ref)
                d = dlogp(xs[variant], gm.log_prob, true)
                out["quality"].setdefault(variant, {}).setdefault(sde_name, []).append(
                    dict(nfe=nfe, rms=r, rms_se=se, dlogp=d.value, dlogp_se=d.se))
            # paired over paths: squared pathwise error and log p_0, reference form minus Taylor form
            dsq = ((xs["reference"] - ref).pow(2).sum(1) - (xs["taylor"] - ref).pow(2).sum(1)) / 4
            dlp = gm.log_prob(xs["reference"]).double() - gm.log_prob(xs["taylor"]).double()
            out["paired"].setdefault(sde_name, []).append(dict(
                nfe=nfe, d_mse=dsq.mean().item(), d_mse_se=dsq.std().item() / math.sqrt(n),
                d_logp=dlp.mean().item(), d_logp_se=dlp.std().item() / math.sqrt(n)))
    return out


# ---- DPM-Solver-fast against DPM-Solver-3 -------------------------------------------------------
def fast_vs_fixed():
    gm = mixture4()
    n = 2000
    true = gm.sample(n, generator=torch.Generator().manual_seed(11))
    out = {}
    for sde_name, sde in (("VP", VPSDE()), ("VE", VESDE())):
        sf = gm.score_fn(sde)
        x_T = sde.prior_sampling((n, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        ref = reference_flow(sde, sf, x_T)
        rows_ = []

        def record(label, x, nfe):
            r, se = rms_se(x, ref)
            d = dlogp(x, gm.log_prob, true)
            rows_.append(dict(label=label, nfe=nfe, rms=r, rms_se=se, dlogp=d.value, dlogp_se=d.se))
            print(f"fast {sde_name} {label:40s} nfe {nfe:3d} rms {r:.4f} +- {se:.4f} dlogp {d.value:+.3f}", flush=True)

        for steps in (3, 6):
            x, info = sample(sde, sf, None, "dpm_solver", x_T=x_T, steps=steps, order=3)
            record(f"dpm_solver order 3, split=fixed, steps={steps}", x, info.nfe)
        for nfe in (9, 10, 18, 20):
            x, info = sample(sde, sf, None, "dpm_solver", x_T=x_T, steps=nfe, split="fast")
            record(f"split=fast, logsnr grid ({info.steps} steps)", x, info.nfe)
        for nfe in (10, 20):
            x, info = sample(sde, sf, None, "dpm_solver", x_T=x_T, steps=nfe, split="fast", schedule="uniform")
            record(f"split=fast, uniform grid ({info.steps} steps)", x, info.nfe)
        out[sde_name] = rows_
    floor = dlogp(gm.sample(n, generator=torch.Generator().manual_seed(12)), gm.log_prob, true)
    return dict(rows=out, floor=dict(dlogp=floor.value, se=floor.se), n=n)


def main():
    if "--page" in sys.argv[1:]:            # re-render the page from the stored JSON
        with open(OUT_JSON) as f:
            res = json.load(f)
        with open(OUT_MD, "w") as f:
            f.write(markdown(res))
        print(f"-> {OUT_MD}")
        return
    torch.set_num_threads(1)
    t0 = time.time()
    pairs = goldens()
    res = dict(goldens=pairs, table=table(pairs), three_m=three_m(), fast=fast_vs_fixed())
    res["meta"] = dict(seconds=time.time() - t0, torch=torch.__version__, python=platform.python_version(),
                       command="python bench/sampler_table.py")
    for path in (OUT_JSON, OUT_MD):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(OUT_JSON, "w") as f:
        json.dump(res, f, indent=1, default=lambda o: None if isinstance(o, float) and math.isinf(o) else str(o))
    with open(OUT_MD, "w") as f:
        f.write(markdown(res))
    print(f"-> {OUT_JSON}, {OUT_MD} ({res['meta']['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
