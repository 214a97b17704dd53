"""ELBO standard error with the exact divergence vs Hutchinson's estimate, at equal n_t, on an exact
Gaussian-mixture score (no training): why `elbo` defaults to trace="hutchinson" while
`log_likelihood` defaults to "exact".

    python bench/elbo_trace.py        # ~1 minute on one core; writes bench/results/elbo_trace.json

For each dimension D: a 4-component mixture in D dimensions (`make_mixture("random")`), 64 test
points, n_t = 32 draws per point; reports the mean per-point Monte Carlo standard error of the
ELBO (nats) and the VJPs (batched backward passes, 1024 rows each) of both traces.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from models.analytic import make_mixture  # noqa: E402
from sde_lib import VPSDE  # noqa: E402
from solvers import elbo  # noqa: E402


def main():
    torch.set_num_threads(1)
    sde, rows = VPSDE(), []
    for D in (2, 16, 64):
        gm = make_mixture("random", D=D, K=4, generator=torch.Generator().manual_seed(D))
        x = gm.sample(64, generator=torch.Generator().manual_seed(1))
        row = {"D": D}
        for trace in ("exact", "hutchinson"):
            r = elbo(sde, gm.score_fn(sde), x, n_t=32, trace=trace, generator=torch.Generator().manual_seed(2))
            row[trace] = {"mean_stderr": r.stderr.mean().item(), "vjps": r.vjps,
                          "mean_elbo": r.elbo.mean().item()}
        rows.append(row)
        print(row)
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "elbo_trace.json"), "w") as f:
        json.dump({"n_t": 32, "points": 64, "sde": "vpsde", "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
