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

    from .guided import guided_score_fn, labels_for

    s = config.sampling
    sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, s.use_ema)
    labels, num_samples = labels_for(config)          # class labels and guidance (issue 10)
    score_fn, guidance = guided_score_fn(config, workdir, sde, model, labels)
    options = dict(s.options.get(s.sampler, {}) or {})
    if s.sampler != "ode" and "steps" not in options:
        options["steps"] = s.steps
    gen = torch.Generator().manual_seed(s.seed)
    shape = (num_samples, *data_shape(model))
    x, info = solvers.sample(sde, score_fn, shape, sampler=s.sampler, generator=gen, denoise=s.denoise,
                             progress=bool(config.training.get("progress", True)), **options)
    out = {"samples": x.numpy()}
    if labels is not None:
        out["labels"] = labels.numpy()
    is_image = len(shape) == 4
    if is_image:
        u8 = model_to_uint8(x)
        out["images_uint8"] = u8.numpy()
        figure = os.path.join(workdir, "samples.png")
        per_row = s.samples_per_class if str(s.get("class_label", "none")).lower() == "all" else 0
        save_image_grid(u8, figure, cols=per_row)
    else:
        figure = os.path.join(workdir, "samples.png")
        if shape[1] >= 2:
            data = get_dataset(config).test
            save_scatter(x.numpy(), data.numpy(), figure)
        else:
            figure = None
    np.savez(os.path.join(workdir, "samples.npz"), **out)
    report = {"sampler": s.sampler, "options": json_safe(info.options), "nfe": info.nfe,
              "seconds": round(info.seconds, 3), "num_samples": num_samples, "use_ema": s.use_ema,
              "checkpoint": ckpt, "step": step, "finite": bool(torch.isfinite(x).all()),
              "class_label": str(s.get("class_label", "none")), **json_safe(guidance)}
    with open(os.path.join(workdir, "sample.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"sampled {num_samples} with {s.sampler} ({info.nfe} score evaluations, {info.seconds:.1f}s): "
          f"{os.path.join(workdir, 'samples.npz')}" + (f", {figure}" if figure else "")
          + f", {os.path.join(workdir, 'sample.json')}")
    return report
