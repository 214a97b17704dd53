"""Helpers shared by the modes: data shapes, JSON-safe reports, the restored score function,
the device and process group of a command, and streamed `.npz` output.

What a mode calls to be device-, rank- and run-directory-aware:
    device, dist = setup(config)                    # config.device; torchrun's process group
    sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, use_ema,
                                                      checkpoint=STEP_or_None, device=device)
    out_dir = run_dir(workdir, "eval", step, tag)   # rank 0 creates, every rank gets the path
    for lo, hi, mine in batches(n, batch_size):     # this rank's slice `mine` of rows lo..hi-1
        y = ...(rows in mine)...; y_all = gather(y, lo, hi, batch_size)   # all rows lo..hi-1, every rank
    if dist.is_main: write files into out_dir
Randomness must come from per-row or per-batch seeds (sample: `training.distributed.
sample_seeds(seed, mine.start, mine.stop)`; eval: a generator per (seed, repeat, batch)) so
results do not depend on the number of processes. compare deals whole cells over the ranks
instead of rows. Modes not sharded this way are refused under torchrun in run.py
(train_classifier, inpaint, colorize).
"""
from __future__ import annotations

import os
from .rundir import new_run_dir
from training import distributed
from training import restore_model
from training.device import resolve_device
from training.workdir import temp_name
import models
import sde_lib


class RunFailed(RuntimeError):
    """A run that produced unusable results (exit status 1; nothing was written over earlier results)."""


def data_shape(model):
    if hasattr(model, "image_size"):
        return (model.num_channels, model.image_size, model.image_size)
    return (model.dim,)


def json_safe(v):
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return repr(v)


def setup(config):
    """(device, DistInfo) of this command: resolves config.device and joins torchrun's group."""
    device = resolve_device(config.device)
    return device, distributed.init(device)


def restored_score_fn(config, workdir, use_ema, checkpoint=None, device=None):
    """(sde, model, score_fn, step, checkpoint path) of the checkpoint of step `checkpoint`
    (None: the latest) in `workdir`, with the model on `device`. Never DDP-wrapped: solvers
    (adaptive ones included) run per rank on a plain module."""
    sde = sde_lib.get_sde(config)
    model, step, ckpt = restore_model(config, workdir, use_ema=use_ema, step=checkpoint, device=device)
    return sde, model, models.get_score_fn(sde, model), step, ckpt


def run_dir(workdir, kind, step, tag):
    """A fresh `workdir/<kind>/step<step>-<tag>-<NNN>/`, created by rank 0, path on every rank."""
    here = distributed.current()
    return distributed.broadcast_object(new_run_dir(workdir, kind, step, tag) if here.is_main else None)


def _part(lo, hi, batch_size, rank):
    return range(min(hi, lo + rank * batch_size), min(hi, lo + (rank + 1) * batch_size))


def batches(n, batch_size):
    """Rounds of work over the ranks: (lo, hi, mine) with rows lo..hi-1 of this round
    (world_size * batch_size of them) and this rank's part `mine` (a range of at most
    batch_size rows). Rank r of round k holds batch k * world_size + r of a one-process run
    with the same batch size, so every batch, and hence every result, is the same whatever the
    number of processes (bit for bit: even the floating-point sums inside a batch agree)."""
    here = distributed.current()
    per_round = batch_size * here.world_size
    for lo in range(0, n, per_round):
        hi = min(n, lo + per_round)
        yield lo, hi, _part(lo, hi, batch_size, here.rank)


def gather(y, lo, hi, batch_size):
    """Every rank's rows of round lo..hi-1 (see `batches`), concatenated in order, on every rank."""
    here = distributed.current()
    counts = [len(_part(lo, hi, batch_size, r)) for r in range(here.world_size)]
    return distributed.gather_rows(y, counts)


class NpzWriter:
    """Writes arrays of known shape batch by batch into `<path>` (.npz) without holding them in
    memory: each goes to a temporary memory-mapped .npy, zipped into the .npz on `close()` and
    renamed into place. `abort()` removes every temporary file; nothing is left at `path`."""

    def __init__(self, path, fields):
        import numpy as np
        self.path, self.dir = path, os.path.dirname(path)
        self.tmp = {k: temp_name(self.dir, f"{k}.npy") for k in fields}
        self.arrays = {k: np.lib.format.open_memmap(self.tmp[k], mode="w+", dtype=dt, shape=shape)
                       for k, (shape, dt) in fields.items()}

    def write(self, name, lo, values):
        self.arrays[name][lo:lo + len(values)] = values

    def close(self):
        import numpy as np
        for a in self.arrays.values():
            a.flush()
        tmp = temp_name(self.dir, os.path.basename(self.path))
        with open(tmp, "wb") as f:
            np.savez(f, **self.arrays)
        self.arrays = {}
        os.replace(tmp, self.path)
        self._remove()
        return self.path

    def abort(self):
        self.arrays = {}
        self._remove()

    def _remove(self):
        for p in self.tmp.values():
            if os.path.exists(p):
                os.remove(p)


def next_command(mode: str, workdir: str) -> str:
    """The `next: ...` line printed at the end of each mode: the command a newcomer most likely wants next."""
    demo = os.path.normpath(workdir) == os.path.join("runs", "demo")
    run = "python run.py" + ("" if demo else f" --workdir {workdir}")
    hints = {
        "all": f"{run} --mode compare --config.compare.quick=True   (a sampler study on this model, minutes); "
               f"{run} --mode sample --config.sampling.sampler=unipc --config.sampling.steps=10",
        "train": f"{run} --mode sample --config.sampling.sampler=dpmpp_2m --config.sampling.steps=20; "
                 f"{run} --mode eval   (test bits/dim beside two baselines)",
        "sample": f"{run} --mode eval   (test bits/dim); other samplers: --config.sampling.sampler=NAME "
                  f"(python -c \"import solvers; print(solvers.sampler_table())\")",
        "eval": f"{run} --mode compare --config.compare.quick=True   (every sampler at 5-20 NFE, minutes)",
        "compare": f"add samplers, budgets or seeds: {run} --mode compare \"--config.compare.nfe=(5, 10, 20, 50)\" "
                   f"(finished cells are reused; the new study gets its own directory)",
        "train_classifier": f"{run} --mode sample --config.sampling.class_label=all --config.sampling.guidance=classifier",
        "train_contrastive": f"{run} --mode sample --config.sampling.guidance=contrastive "
                             f"--config.sampling.prompt=\"a thick seven leaning right\"   (a digits prompt; this run's words: "
                             f"{os.path.join(workdir, 'vocab.json')})",
        "inpaint": f"{run} --mode inpaint --config.inpaint.mask=random   (masks: left_half, right_half, top_half, "
                   f"bottom_half, box, random)",
        "colorize": f"{run} --mode sample   (unconditional samples of the same model)",
        "train_autoencoder": f"python run.py --config <a configs/*_latent_*.py> --workdir <new dir> --mode train "
                             f"--config.data.autoencoder={workdir}   (a score model on its latents)",
        "import": f"{run} --mode sample --config.sampling.steps=100   (samples of the imported model); "
                  f"{run} --mode eval   (needs the test images, given at import as --config.data.path)",
    }
    return "next: " + hints[mode]
