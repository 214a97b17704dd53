"""Benchmark: the ODE solver's share of a digits bits/dim, per method and tolerance.

On a trained model (default: the demo's workdir) and the first `--n` test digits, with one
fixed uniform dequantisation and one fixed Rademacher probe per example (so every setting
solves the same ODE), computes bits/dim with each solver setting and compares it with a tight
solve (rk45 at rtol = atol = 1e-6, per-sample norm). Reports per setting the mean and worst
|error| in bits/dim and the NFE per example, to put beside the eval's standard error (the
demo's ODE NLL: about 0.011). This is how `eval.method` / `eval.rtol` defaults are chosen.

    python bench/eval_tolerance.py --workdir runs/demo       # a few minutes on one core
    -> bench/results/eval_tolerance.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OUT = os.path.join(ROOT, "bench", "results")
SETTINGS = [("dopri5", 1e-4, "sample"), ("rk45", 1e-4, "sample"), ("dopri5", 1e-3, "sample"),
            ("rk45", 1e-3, "sample"), ("rk45", 1e-3, "batch"), ("rk45", 1e-2, "sample")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    import solvers
    from runner.common import restored_score_fn
    from runner.rundir import load_saved_config
    from training.data import dequantize, get_dataset
    config = load_saved_config(a.workdir)
    if config is None:
        raise SystemExit(f"error: no saved config.py in {a.workdir!r}; train a model there first")
    sde, model, score_fn, step, _ = restored_score_fn(config, a.workdir, True, None, torch.device("cpu"))
    ds = get_dataset(config)
    L = ds.num_levels
    x = dequantize(ds.test[:a.n], torch.Generator().manual_seed(0), num_levels=L)
    eps = config.eval.eps

    def bpd(method, tol, norm):
        out = solvers.log_likelihood(sde, score_fn, x, trace="hutchinson", method=method, rtol=tol, atol=tol,
                                     eps=eps, norm=norm, generator=torch.Generator().manual_seed(1))
        return solvers.bits_per_dim(out.logp, x.shape, num_levels=L) if L else None, out

    with torch.no_grad():
        ref, ref_out = bpd("rk45", 1e-6, "sample")
        rows = [{"method": "rk45", "tol": 1e-6, "norm": "sample", "nfe": ref_out.nfe, "reference": True,
                 "bits_per_dim": ref.mean().item()}]
        for method, tol, norm in SETTINGS:
            b, out = bpd(method, tol, norm)
            err = (b - ref).abs()
            rows.append({"method": method, "tol": tol, "norm": norm, "nfe": out.nfe,
                         "bits_per_dim": b.mean().item(), "mean_abs_err": err.mean().item(),
                         "worst_abs_err": err.max().item(), "error_of_mean": (b - ref).mean().item()})
            print(f"{method:6s} tol {tol:.0e} norm {norm:6s} NFE {out.nfe:4d}  mean |err| {err.mean():.2e}  "
                  f"worst {err.max():.2e}  error of the mean {(b - ref).mean().item():+.2e} bits/dim", flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "eval_tolerance.json"), "w") as f:
        json.dump({"workdir": a.workdir, "step": step, "n": a.n, "levels": L,
                   "reference": "rk45, rtol = atol = 1e-6, norm=sample", "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
