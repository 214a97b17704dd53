"""`--mode sample`: draw samples from the trained model."""
from __future__ import annotations

import json
import os

from .common import data_shape, json_safe, restored_score_fn
from .figures import save_image_grid, save_scatter


def run_sample(config, workdir):
    import numpy as np
    import torch
    import solvers
    from training.data import get_dataset, model_to_uint8

    s = config.sampling
    sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, s.use_ema)
    options = dict(s.options.get(s.sampler, {}) or {})
    if s.sampler != "ode" and "steps" not in options:
        options["steps"] = s.steps
    gen = torch.Generator().manual_seed(s.seed)
    shape = (s.num_samples, *data_shape(model))
    x, info = solvers.sample(sde, score_fn, shape, sampler=s.sampler, generator=gen, denoise=s.denoise,
                             progress=bool(config.training.get("progress", True)), **options)
    out = {"samples": x.numpy()}
    is_image = len(shape) == 4
    if is_image:
        u8 = model_to_uint8(x)
        out["images_uint8"] = u8.numpy()
        figure = os.path.join(workdir, "samples.png")
        save_image_grid(u8, figure)
    else:
        figure = os.path.join(workdir, "samples.png")
        if shape[1] >= 2:
            data = get_dataset(config).test
            save_scatter(x.numpy(), data.numpy(), figure)
        else:
            figure = None
    np.savez(os.path.join(workdir, "samples.npz"), **out)
    report = {"sampler": s.sampler, "options": json_safe(info.options), "nfe": info.nfe,
              "seconds": round(info.seconds, 3), "num_samples": s.num_samples, "use_ema": s.use_ema,
              "checkpoint": ckpt, "step": step, "finite": bool(torch.isfinite(x).all())}
    with open(os.path.join(workdir, "sample.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"sampled {s.num_samples} with {s.sampler} ({info.nfe} score evaluations, {info.seconds:.1f}s): "
          f"{os.path.join(workdir, 'samples.npz')}" + (f", {figure}" if figure else "")
          + f", {os.path.join(workdir, 'sample.json')}")
    return report
