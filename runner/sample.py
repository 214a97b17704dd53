"""`--mode sample`: draw samples from the trained model.

Each run writes a fresh `workdir/samples/step<step>-<sampler>-<NNN>/` with `samples.npz`
(`samples` float32, and `images_uint8` for images), `samples.png` (a grid of the first 64,
or a scatter against the test split) and `sample.json`; the last line of stdout is the
`.npz` path. Samples are drawn `sampling.batch_size` at a time (per process) and streamed to
disk, sample i from its own seed `training.distributed.sample_seeds(sampling.seed, i, i+1)`:
its noise is the same whatever the batch size and the number of processes (torchrun), and with
torchrun every process draws exactly the batches a one-process run draws, so the samples are
bit-identical to it. (Another batch size gives the same noise; the network's batched float
arithmetic may then differ in the last bits, which chaotic samplers can amplify.) A batch with
any non-finite sample stops the run: nothing is written and RunFailed names the sampler.
"""
from __future__ import annotations

import json
import os
import shutil
import time

from .cold import cold_drawer, is_cold
from .common import (NpzWriter, RunFailed, batches, data_shape, gather, json_safe, next_command, restored_score_fn,
                     run_dir, setup)
from .figures import save_image_grid, save_scatter
from .guided import guided_score_fn, labels_for
from .latent import load_codec
from .prompted import prompt_sampling, prompt_score_fn
from training.classifier import restore_classifier
from training.data import get_dataset, model_to_uint8
from training.distributed import sample_seeds
import solvers

GRID = 64          # samples in the png grid
SCATTER = 5000     # points in the scatter plot


def sampler_options(config):
    s = config.sampling
    options = dict(s.options.get(s.sampler, {}) or {})
    if s.sampler != "ode" and "steps" not in options:
        options["steps"] = s.steps
    return options


def run_sample(config, workdir, checkpoint=None, next_hint=True):
    import numpy as np
    import torch

    s = config.sampling
    device, here = setup(config)
    cold_draw = None
    if is_cold(config):      # a restoration network: solvers.cold_sample from a prior draw
        cold_draw, model, step, ckpt, options = cold_drawer(config, workdir, checkpoint, device)
    else:
        sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, s.use_ema, checkpoint, device)
        options = sampler_options(config)
    dims = data_shape(model)
    codec = load_codec(config, workdir, device)     # latent runs: samples are decoded to the data's levels
    out_dims = dims if codec is None else tuple(codec.decode(torch.zeros(1, *dims, device=device)).shape[1:])
    is_image = len(out_dims) == 3
    labels, n = labels_for(config)          # class labels and guidance (runner/guided.py)
    per_row = s.samples_per_class if str(s.class_label).lower() == "all" else 0
    classifier = None       # restored once for all label batches (classifier / universal guidance)
    if labels is not None and s.guidance in ("classifier", "universal"):
        classifier = restore_classifier(config, s.classifier_workdir or workdir)
    guidance = ({"guidance": "none"} if labels is None else      # (guidance needs labels: validated)
                guided_score_fn(config, workdir, sde, model, labels[:1].to(device), classifier=classifier)[1])
    if prompt_sampling(config):             # prompts and contrastive guidance (runner/prompted.py)
        score_fn, guidance = prompt_score_fn(config, workdir, sde, model, device)
    out_dir = run_dir(workdir, "samples", step, s.sampler)
    npz_path = os.path.join(out_dir, "samples.npz")
    writer = None
    if here.is_main:
        fields = {"samples": ((n, *out_dims), np.float32)}
        if is_image:
            fields["images_uint8"] = ((n, *out_dims), np.uint8)
        if codec is not None:
            fields["latents"] = ((n, *dims), np.float32)
        if labels is not None:
            fields["labels"] = ((n,), np.int64)
        writer = NpzWriter(npz_path, fields)
    keep = (n if per_row else GRID) if is_image else SCATTER
    preview, nfes, t0, info = [], [], time.time(), None
    progress = config.training.progress and here.is_main
    try:
        for lo, hi, mine in batches(n, s.batch_size):
            if len(mine):
                if labels is not None:      # the guided score of this batch's labels
                    score_fn = guided_score_fn(config, workdir, sde, model, labels[mine.start:mine.stop].to(device),
                                               classifier=classifier)[0]
                if cold_draw is not None:
                    x, info = cold_draw(sample_seeds(s.seed, mine.start, mine.stop))
                else:
                    x, info = solvers.sample(sde, score_fn, (len(mine), *dims), sampler=s.sampler,
                                             seeds=sample_seeds(s.seed, mine.start, mine.stop), denoise=s.denoise,
                                             device=device, dtype=torch.float32, progress=progress, **options)
                nfes.append(info.nfe)
            else:
                x = torch.zeros((0, *dims), device=device)
            x = gather(x, lo, hi, s.batch_size)
            bad = int((~torch.isfinite(x.reshape(x.shape[0], -1))).any(dim=1).sum())
            if bad:
                raise RunFailed(
                    f"sampler {s.sampler!r} with options {json_safe(options)} (denoise={s.denoise}) gave {bad} "
                    f"non-finite of {hi - lo} samples in samples {lo}..{hi - 1} (checkpoint {ckpt}); nothing "
                    f"was written. Try more steps or another sampler (--config.sampling.sampler=...)")
            if codec is not None:        # the one path from latents to pixels: D(u / s), quantised
                u, x = x, codec.decode(x)
                if writer is not None:
                    writer.write("latents", lo, u.cpu().numpy())
            if writer is not None:
                x = x.cpu()
                writer.write("samples", lo, x.numpy())
                if is_image:
                    writer.write("images_uint8", lo, model_to_uint8(x).numpy())
                if labels is not None:
                    writer.write("labels", lo, labels[lo:hi].numpy())
                if sum(len(p) for p in preview) < keep:
                    preview.append(x[:keep - sum(len(p) for p in preview)])
    except BaseException:
        if writer is not None:
            writer.abort()
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    if not here.is_main:
        return None
    writer.close()
    first = torch.cat(preview)
    figure = os.path.join(out_dir, "samples.png")
    if is_image:
        save_image_grid(model_to_uint8(first), figure, cols=per_row)
    elif dims[0] >= 2:
        save_scatter(first.numpy(), get_dataset(config).test[:SCATTER].numpy(), figure)
    else:
        figure = None
    report = {"sampler": s.sampler, "options": json_safe(info.options if info is not None else options),
              "nfe": max(nfes) if nfes else 0, "nfe_total": sum(nfes), "batches": len(nfes),
              "batch_size": s.batch_size, "world_size": here.world_size, "seconds": round(time.time() - t0, 3),
              "num_samples": n, "seed": s.seed, "seeds": "sample i: sampling.seed * 1000003 + i",
              "use_ema": s.use_ema, "checkpoint": ckpt, "step": step, "device": str(device), "finite": True,
              "npz": npz_path, "class_label": str(s.class_label), **json_safe(guidance)}
    with open(os.path.join(out_dir, "sample.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"sampled {n} with {s.sampler} ({report['nfe']} score evaluations per batch, {report['seconds']:.1f}s)"
          f" into {out_dir}: sample.json" + (", samples.png" if figure else ""))
    if next_hint:
        print(next_command("sample", workdir))
    print(npz_path)
    return report
