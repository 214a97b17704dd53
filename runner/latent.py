"""Latent runs in the run directory: `--mode train_autoencoder`, the checks a latent run gets before any
work, its saved scale factor, and its likelihood bound in `--mode eval`.

A latent run is one with `data.autoencoder` set (docs/guide/latent.md). Its first train estimates the
scale factor s = 1 / std(latents) from the autoencoder's cached latents and saves it as
`workdir/latent.json` (with the autoencoder checkpoint's content hash); every later mode uses that saved
s and refuses an autoencoder whose checkpoint has changed since. Under torchrun the bound's batches are
dealt over the ranks and gathered on rank 0 (the same numbers for any process count).
"""
from __future__ import annotations

import json
import math
import os
import time
from functools import partial

import torch
import torch.nn.functional as F

import solvers
from configs.errors import InputError
from evaluation.latent_bound import latent_bound
from solvers.baselines import per_pixel_categorical
from training import train
from training.prompts import uses_prompts
from training.checkpoint import find_checkpoint
from training.data import get_dataset, model_to_levels
from training.distributed import all_gather_objects
from training.latent import (AutoencoderObjective, check_latent_shape, check_scale, latent_dataset,
                             load_autoencoder, pixel_config, read_autoencoder_info, write_autoencoder_info,
                             write_json_atomic)
from training.workdir import WorkdirLock

from .common import batches, gather, restored_score_fn, run_dir, setup
from .figures import save_loss_plot
from .rundir import save_config

LATENT_FILE = "latent.json"
#: modes a latent run does not support yet (refused before any work)
NOT_YET = ("colorize", "train_classifier")


def is_latent(config) -> bool:
    return bool(config.data.get("autoencoder", ""))


def check_latent_mode(config, mode: str, workdir: str) -> None:
    """Before any work: an autoencoder run that is missing, untrained or trained on other data, a
    latent shape the config does not declare, a saved scale factor that is 0 or not finite, or a mode a
    latent run cannot do yet: InputError."""
    if mode == "train_autoencoder":
        if is_latent(config):
            raise InputError(f"--mode train_autoencoder trains on pixels; data.autoencoder must be '', got "
                             f"{config.data.autoencoder!r}")
        return
    if not is_latent(config):
        return
    if mode in NOT_YET:
        raise InputError(f"--mode {mode} is not implemented for latent runs yet (data.autoencoder="
                         f"{config.data.autoencoder!r}); latent runs support train, sample, eval and all")
    if uses_prompts(config) or config.sampling.guidance == "contrastive":
        # the prompts' attributes are computed on the training images, which a latent run holds as latents
        raise InputError(f"prompts (model.text_vocab_size={config.model.text_vocab_size}, sampling.guidance="
                         f"{config.sampling.guidance!r}) are not implemented for latent runs yet (data.autoencoder="
                         f"{config.data.autoencoder!r}); train a prompt model on pixels")
    info = read_autoencoder_info(config.data.autoencoder)
    pixel_config(config, info)
    check_latent_shape(config, info)
    find_checkpoint(os.path.join(config.data.autoencoder, "checkpoints"), None)
    saved = read_latent_file(workdir)
    if saved is not None:
        check_scale(saved.get("scale"), f"saved in {os.path.join(workdir, LATENT_FILE)}")


def read_latent_file(workdir: str):
    path = os.path.join(workdir, LATENT_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path!r} is unreadable ({type(e).__name__})") from None


def latent_run_data(config, workdir: str, device=None):
    """The latent Dataset of a latent run with its saved scale factor (InputError when the autoencoder's
    checkpoint is not the one the run was trained with), or, for a run not trained yet, the estimate."""
    saved = read_latent_file(workdir)
    ds = latent_dataset(config, None if saved is None else saved["scale"], device)
    if saved is not None and saved["autoencoder_hash"] != ds.autoencoder_hash:
        raise InputError(f"the autoencoder {config.data.autoencoder!r} changed since this latent run was trained "
                         f"(checkpoint hash {ds.autoencoder_hash}, trained with {saved['autoencoder_hash']}); "
                         f"use the autoencoder checkpoint it was trained with, or a new --workdir")
    return ds


def save_latent_file(ds, workdir: str) -> str:
    info = {"scale": ds.codec.scale, "latent_std": ds.latent_std, "encoding": "posterior mean",
            "autoencoder": ds.autoencoder_checkpoint, "autoencoder_hash": ds.autoencoder_hash,
            "latent_shape": list(ds.codec.latent_shape)}
    return write_json_atomic(workdir, LATENT_FILE, info)


def run_train_autoencoder(config, workdir, resume_from=None):
    """`--mode train_autoencoder`: the autoencoder of config.autoencoder on config.data, in the training loop."""
    device, here = setup(config)
    ds = get_dataset(config)
    if not (ds.is_image and ds.discrete):
        raise InputError(f"--mode train_autoencoder needs discrete images (its decoder is a likelihood on the "
                         f"data's levels); data set {ds.name!r} is not")
    objective = AutoencoderObjective(config, ds.num_levels)
    if here.is_main:
        os.makedirs(workdir, exist_ok=True)
        lock = WorkdirLock(workdir).acquire()
    try:
        if here.is_main:
            save_config(config, workdir)
            write_autoencoder_info(config, workdir, ds.num_levels)
        state = train(config, workdir, dataset=ds, resume_from=resume_from, objective=objective,
                      adapt_threads=config.training.num_threads == -1)
    finally:
        if here.is_main:
            lock.release()
    if here.is_main:
        metrics = os.path.join(workdir, "metrics.jsonl")
        save_loss_plot(metrics, os.path.join(workdir, "loss.png"))
        print(f"trained the autoencoder to step {state.step}; checkpoint: {state.checkpoint}; metrics: {metrics}")
    return state


def run_latent_eval(config, workdir, checkpoint=None):
    """`--mode eval` of a latent run: the bound of evaluation.latent_bound on the test split (bits/dim of x
    on the data's levels), its three terms with SEs, beside the per-pixel baseline; eval/.../eval.json."""
    e = config.eval
    device, here = setup(config)
    sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, e.use_ema, checkpoint, device)
    ds = latent_run_data(config, workdir, device)
    codec, pixels = ds.codec, ds.pixels
    x0 = pixels.test if e.num_samples == 0 else pixels.test[:e.num_samples]
    n, L = x0.shape[0], pixels.num_levels
    eps = sde.eps if e.eps is None else float(e.eps)
    ode = dict(trace=e.trace, probes=e.probes, method=e.method, rtol=e.rtol, atol=e.atol, eps=eps)
    # batches dealt over the ranks; batch b's draws come from its own generator (seed, b's first row), so
    # the numbers are the same whatever the process count; rank 0 gathers the rows
    keys = ("rec", "log_q", "neg_log_pz", "bound")
    rows, nfe, mine_count, t0 = torch.empty(n, len(keys), dtype=torch.float64), 0, 0, time.time()
    for lo, hi, mine in batches(n, e.batch_size):
        cols = torch.zeros(len(mine), len(keys), dtype=torch.float64)
        if len(mine):
            gen = torch.Generator().manual_seed(e.seed * 1_000_003 + mine.start)
            log_pz = partial(codec.log_pz, sde, score_fn, **ode, generator=gen)
            res = latent_bound(x0[mine.start:mine.stop].to(device), codec.posterior, codec.log_px, log_pz,
                               samples=e.repeats, generator=gen)
            cols = torch.stack([res.per_example[k] for k in keys], 1)
            nfe, mine_count = nfe + res.nfe, mine_count + 1
        rows[lo:hi] = gather(cols.to(device), lo, hi, e.batch_size).cpu()
    counts = all_gather_objects((nfe, mine_count))
    nfe = sum(c[0] for c in counts)          # batched score calls summed over ranks
    per = {k: rows[:, j] for j, k in enumerate(keys)}

    def mean_se(v):
        return {"bits_per_dim": v.mean().item(), "stderr": (v.std() / math.sqrt(v.numel())).item()}

    pp = per_pixel_categorical(model_to_levels(pixels.train, L), model_to_levels(x0, L), L)
    report = {"bits_per_dim": mean_se(per["bound"])["bits_per_dim"], "stderr": mean_se(per["bound"])["stderr"],
              "estimator": "latent_bound", "terms": {k: mean_se(per[k]) for k in ("rec", "log_q", "neg_log_pz")},
              "posterior_samples": e.repeats, "num_examples": n, "scale": codec.scale,
              "log_scale_jacobian_nats": codec.log_scale_jacobian,
              "quantity": f"upper bound on -log2 P(x)/D of the discrete data on its {L} levels: "
                          f"E_q[-log p(x|z) + log q(z|x) - log p(z)], log p(z) by the latent probability-flow ODE",
              "baselines": {"per_pixel": pp.mean().item()},
              "baselines_stderr": {"per_pixel": (pp.std() / math.sqrt(n)).item()},
              "trace": e.trace, "method": e.method, "rtol": e.rtol, "atol": e.atol, "eps": eps, "nfe": nfe,
              "seconds": round(time.time() - t0, 3), "checkpoint": ckpt, "step": step,
              "autoencoder": ds.autoencoder_checkpoint, "dataset": pixels.name, "split": "test"}
    out = os.path.join(run_dir(workdir, "eval", step, f"latent_bound-{e.trace}"), "eval.json")
    if not here.is_main:
        return None
    report["world_size"], report["batches_per_rank"] = here.world_size, [c[1] for c in counts]
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    t = report["terms"]
    print(f"test bits/dim bound (n={n}, {e.repeats} posterior sample(s) each): {report['bits_per_dim']:.4f} +- "
          f"{report['stderr']:.4f}\n  -log p(x|z) {t['rec']['bits_per_dim']:.4f} +- {t['rec']['stderr']:.4f}"
          f"\n  log q(z|x)  {t['log_q']['bits_per_dim']:.4f} +- {t['log_q']['stderr']:.4f}"
          f"\n  -log p(z)   {t['neg_log_pz']['bits_per_dim']:.4f} +- {t['neg_log_pz']['stderr']:.4f} "
          f"(scale {codec.scale:.4g})\n  per_pixel  {report['baselines']['per_pixel']:.4f} (baseline)\n  -> {out}")
    return report


def latent_inpaint(sde, score_fn, codec, x0, mask, **options):
    """Inpainting in latent space: a latent position is observed when its whole f x f pixel block is
    (in every channel); the observed latents are s mu(x0) there; `solvers.inpaint` samples the rest and
    the decoded image keeps the observed pixels of x0 exactly. (x `[B, C, H, W]`, info)."""
    f = codec.autoencoder.f
    known = ~F.max_pool2d((~mask).float().amax(0, keepdim=True)[None], f)[0].bool()      # [1, h, w]
    u0 = codec.encode(x0)
    u, info = solvers.inpaint(sde, score_fn, u0, known.expand(u0.shape[1:]), **options)
    info.options["latent_mask_observed"] = int(known.sum())
    return torch.where(mask, x0, codec.decode(u)), info


def load_codec(config, workdir, device=None):
    """The LatentCodec of a trained latent run (its saved scale), or None for a pixel run."""
    return latent_run_data(config, workdir, device).codec if is_latent(config) else None


__all__ = ["check_latent_mode", "is_latent", "latent_run_data", "load_autoencoder", "load_codec",
           "run_latent_eval", "run_train_autoencoder", "save_latent_file"]
