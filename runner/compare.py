"""`--mode compare`: every sampler at every budget on the trained model (and the exact score)."""
from __future__ import annotations

import json
import os

from .common import data_shape, json_safe, restored_score_fn, run_dir, setup
from .figures import save_compare_plot


def compare_budgets(config, name):
    """The (label, options) runs of sampler `name` in compare mode: one per grid size, or one
    per tolerance for the adaptive ODE. Options start from config.sampling.options.<name>."""
    import solvers
    base = dict(config.sampling.options.get(name, {}) or {})
    c = config.compare
    if name == "ode" and base.get("method", "dopri5") not in solvers.FIXED_ODE_METHODS:
        return [({"tol": tol}, {**base, "rtol": tol, "atol": tol}) for tol in c.tolerances]
    return [({"steps": n}, {**base, "steps": n}) for n in c.steps]


def run_compare(config, workdir, checkpoint=None):
    """Sampler comparison on the trained model (and, for mixture data, on the exact score)."""
    import torch
    import solvers
    from training.data import get_dataset, mixture_distribution

    c = config.compare
    device, here = setup(config)
    sde, model, model_score_fn, step, ckpt = restored_score_fn(config, workdir, c.use_ema, checkpoint, device)
    ds = get_dataset(config)
    n = min(c.num_samples, ds.test.shape[0], ds.train.shape[0])
    ref = ds.test[:n].double()
    proj = lambda: torch.Generator().manual_seed(c.seed + 1)   # the same directions for every row
    floor = solvers.sliced_wasserstein(ds.train[:n], ref, generator=proj())
    score_fns = [("model", model_score_fn)]
    if ds.name == "mixture":
        m = config.data.mixture
        score_fns.append(("exact", mixture_distribution(m.weights, m.means, m.stds).score_fn(sde)))
    shape = (n, *data_shape(model))
    rows = []
    for score_name, score_fn in score_fns:
        for name in c.samplers:
            for budget, options in compare_budgets(config, name):
                dev = device if score_name == "model" else torch.device("cpu")   # the oracle lives on the CPU
                gen = torch.Generator(device=dev).manual_seed(c.seed)
                x, info = solvers.sample(sde, score_fn, shape, sampler=name, generator=gen, device=dev,
                                         denoise=config.sampling.denoise, **options)
                x = x.cpu()
                finite = bool(torch.isfinite(x).all())
                sw = solvers.sliced_wasserstein(x, ref, generator=proj()) if finite else float("nan")
                rows.append({"score": score_name, "sampler": name, **budget, "nfe": info.nfe,
                             "seconds": round(info.seconds, 4), "sliced_w1": sw, "finite": finite})
                print(f"{score_name:5s} {name:16s} {budget} nfe={info.nfe:5d} sliced W1={sw:.4f} "
                      f"({info.seconds:.2f}s)")
    report = {"dataset": ds.name, "reference": f"test split, first {n}", "num_samples": n,
              "metric": "sliced Wasserstein-1 (256 directions) to the reference",
              "floor": floor, "floor_meaning": f"sliced W1 between {n} training and {n} test examples",
              "denoise": config.sampling.denoise, "checkpoint": ckpt, "step": step, "use_ema": c.use_ema,
              "results": rows}
    out = run_dir(workdir, "compare", step, "sliced_w1")
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump(json_safe(report), f, indent=2)
    figure = os.path.join(out, "compare.png")
    save_compare_plot(report, figure)
    print(f"compared {len(rows)} runs (data floor {floor:.4f}): {os.path.join(out, 'compare.json')}, {figure}")
    return report
