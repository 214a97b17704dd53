"""Benchmark: which step-size rule keeps the PC Langevin corrector from blurring.

PC = reverse-diffusion predictor + one Langevin corrector step (snr 0.16) on a
16-D Gaussian mixture with the exact score, VP and VE, 100 and 1000 steps, for the
corrector's `langevin_norm` rules ("per_sample", "batch", "expected", "kernel"; see
`solvers.correctors.langevin`) and the predictor alone. Metric: dlogp = mean log p_0
of the samples minus that of an equally large true sample (nats, with SE; negative =
blur), plus sliced W1 and component TV.

    python bench/langevin_corrector.py      # ~6 min at 1 thread (BENCH_N=3000)
    -> bench/results/langevin_corrector.json
"""
from __future__ import annotations

import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.analytic import make_mixture  # noqa: E402
from sde_lib import VESDE, VPSDE  # noqa: E402
from solvers import sample  # noqa: E402
from solvers.metrics import mixture_metrics  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
N = int(os.environ.get("BENCH_N", "3000"))
RULES = [("predictor only", {"corrector": "none"})] + [
    (norm, {"langevin_norm": norm}) for norm in ("per_sample", "expected", "batch", "kernel")]


def main():
    torch.set_flush_denormal(True)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    gm = make_mixture("random", D=16, K=4, scale=1.0, std=0.5, generator=torch.Generator().manual_seed(3))
    results = {"setup": {"mixture": "make_mixture('random', D=16, K=4, scale=1.0, std=0.5), seed 3",
                         "sampler": "pc, predictor=reverse_diffusion, corrector=langevin, snr=0.16, "
                                    "corrector_steps=1", "n_samples": N, "dtype": "float64",
                         "threads": torch.get_num_threads()}, "rows": []}
    for sde_name, sde in [("VP", VPSDE()), ("VE", VESDE())]:
        sf = gm.score_fn(sde)
        for steps in (100, 1000):
            for label, opts in RULES:
                t0 = time.perf_counter()
                x, info = sample(sde, sf, (N, 16), "pc", steps=steps, snr=0.16, dtype=torch.float64,
                                 generator=torch.Generator().manual_seed(1), **opts)
                r = mixture_metrics(x, gm, generator=torch.Generator().manual_seed(7))
                r.update(sde=sde_name, steps=steps, rule=label, nfe=info.nfe, seconds=time.perf_counter() - t0)
                results["rows"].append(r)
                print(f"{sde_name} steps={steps:5d} {label:15s} dlogp={r['dlogp']:+.3f}±{r['dlogp_se']:.3f} "
                      f"SW1={r['sw1']:.4f} TV={r['tv']:.3f}", flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "langevin_corrector.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
