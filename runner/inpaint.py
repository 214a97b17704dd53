"""`--mode inpaint` and `--mode colorize` on test images (Song et al. 2021, App. I.2-I.3).

config.inpaint (validated by configs.schema.validate_inpaint): mask (solvers.MASKS), box
(row0, col0, row1, col1 as fractions of the image size), random_fraction (observed share of pixels
for `random`), num_images, sampler (any of solvers.SAMPLERS, with its block of
config.sampling.options) / steps / recurrence, corrector / snr / corrector_steps (for pc; see
solvers.inpaint), seed, use_ema. Writes inpaint.png (rows: original, input with the unknown part
grey, mask, output), inpaint.npz and inpaint.json (mean squared error on the unknown pixels,
with the mean-image fill as the baseline); colorize writes colorize.* (rows: original, grey,
output).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import torch

import solvers
from configs.errors import InputError
from training.data import get_dataset, model_to_uint8

from .common import json_safe, restored_score_fn, run_dir, setup
from .figures import save_image_grid
from .latent import is_latent, latent_inpaint, latent_run_data


def run_inpaint(config, workdir, task: str = "inpaint", checkpoint=None):
    c = config.inpaint
    ds = latent_run_data(config, workdir) if is_latent(config) else get_dataset(config)
    codec = getattr(ds, "codec", None)          # latent runs inpaint in latent space (runner.latent)
    if codec is not None:
        ds = ds.pixels
    if not ds.is_image:
        raise InputError(f"--mode {task} needs image data; data set {ds.name!r} holds vectors")
    if task == "colorize" and ds.shape[0] != 3:
        raise InputError(f"--mode colorize needs 3-channel (RGB) images; data set {ds.name!r} has "
                         f"{ds.shape[0]} channel(s)")
    device, _ = setup(config)
    sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, c.use_ema, checkpoint, device)
    n = min(c.num_images, ds.test.shape[0])
    x0 = ds.test[:n].to(device)
    gen = torch.Generator().manual_seed(c.seed)     # the random mask, then (on the CPU) the sampler's noise
    noise_gen = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(c.seed)
    # the sampler's options block of config.sampling.options, then inpaint's own fields
    opts = dict(config.sampling.options.get(c.sampler, {}))
    opts.update(sampler=c.sampler, steps=c.steps, recurrence=c.recurrence, generator=noise_gen,
                denoise=config.sampling.denoise, progress=config.training.progress)
    if c.sampler == "pc":
        opts.update(corrector=c.corrector, snr=c.snr, corrector_steps=c.corrector_steps)
    mean_img = ds.train.mean(0, keepdim=True).to(device)
    if task == "inpaint":
        mask = solvers.make_mask(c.mask, ds.shape, tuple(c.box), c.random_fraction, gen).to(device)
        if codec is None:
            x, info = solvers.inpaint(sde, score_fn, x0, mask, **opts)
        else:
            x, info = latent_inpaint(sde, score_fn, codec, x0, mask, **opts)
        unknown = ~mask.expand_as(x0)
        shown = torch.where(mask, x0, torch.zeros_like(x0))
        rows = [x0, shown, mask.expand_as(x0).float() * 2 - 1, x]
        baseline = torch.where(mask, x0, mean_img.expand_as(x0))
    else:
        grey = x0.mean(1, keepdim=True)
        x, info = solvers.colorize(sde, score_fn, grey, num_channels=ds.shape[0], **opts)
        unknown = torch.ones_like(x0, dtype=torch.bool)
        rows = [x0, grey.expand_as(x0), x]
        baseline = grey.expand_as(x0)      # baseline: the grey image itself in every channel
        mask = None
    err = ((x - x0) ** 2)[unknown].reshape(-1)
    per_image = (((x - x0) ** 2) * unknown).flatten(1).sum(1) / unknown.flatten(1).sum(1)
    base = (((baseline - x0) ** 2) * unknown).flatten(1).sum(1) / unknown.flatten(1).sum(1)
    se = lambda v: (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else float("nan")
    report = {"task": task, "mask": c.mask if task == "inpaint" else "grey = channel mean",
              "num_images": n, "nfe": info.nfe, "options": json_safe(info.options), "seconds": round(info.seconds, 2),
              "mse_unknown": per_image.mean().item(), "mse_unknown_se": se(per_image),
              "baseline": "mean training image in the unknown part" if task == "inpaint" else "grey in every channel",
              "baseline_mse_unknown": base.mean().item(), "baseline_mse_unknown_se": se(base),
              "finite": bool(torch.isfinite(err).all()), "checkpoint": ckpt, "step": step}
    if task == "inpaint":
        report["known_exact"] = bool(torch.equal(x[mask.expand_as(x)], x0[mask.expand_as(x0)]))
    x, x0, mask = x.cpu(), x0.cpu(), None if mask is None else mask.cpu()
    grid = torch.cat([model_to_uint8(r.clamp(-1, 1).cpu()) for r in rows])
    out_dir = run_dir(workdir, task, step, c.mask if task == "inpaint" else "grey")
    figure = os.path.join(out_dir, f"{task}.png")
    save_image_grid(grid, figure, cols=n)
    np.savez(os.path.join(out_dir, f"{task}.npz"), original=x0.numpy(), output=x.numpy(),
             **({"mask": mask.numpy()} if mask is not None else {}))
    with open(os.path.join(out_dir, f"{task}.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"{task}: {n} test images, {info.nfe} score evaluations; MSE on unknown pixels "
          f"{report['mse_unknown']:.4f} +- {report['mse_unknown_se']:.4f} (baseline {report['baseline_mse_unknown']:.4f}): "
          f"{figure}, {os.path.join(out_dir, task + '.json')}")
    return report
