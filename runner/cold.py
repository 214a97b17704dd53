"""Cold diffusion in the run directory: which modes and samplers a cold
(restoration) run allows, its prior x_T, and the sample-mode draw. The `cold` section's field
checks are `configs.schema.validate_cold`.

A run is cold when `config.cold.degradation` names a registered degradation: `--mode train`
trains R(D(x0, t), t) ~ x0 with the usual loop; `--mode sample` needs `sampling.sampler="cold"`
and runs `solvers.cold_sample` (cold.algorithm, cold.steps) from x_T drawn from `cold.prior`.
`eval` (bits/dim) and `compare` need a score model and refuse a cold run; a hot run refuses
`sampling.sampler="cold"`.
"""
from __future__ import annotations

import torch

import sde_lib
from configs.errors import InputError
from models import get_restore_fn
from solvers import COLD_SAMPLER, DegradedPrior, cold_sample, cold_time_grid
from training import restore_model
from training.data import get_dataset


def is_cold(config) -> bool:
    return bool(config.cold.degradation)


def check_cold_mode(config, mode: str) -> None:
    """A cold run sampled with a hot sampler, a hot run with the cold sampler, or eval/compare of a
    cold run: InputError before any work."""
    cold = is_cold(config)
    sampler = config.sampling.sampler
    if mode in ("sample", "all"):
        if cold and sampler != COLD_SAMPLER:
            raise InputError(f"cold.degradation={config.cold.degradation!r} trains a restoration network, which "
                             f"hot sampler {sampler!r} cannot sample (it needs a score); use "
                             f"--config.sampling.sampler={COLD_SAMPLER}")
        if not cold and sampler == COLD_SAMPLER:
            raise InputError(f"sampling.sampler={COLD_SAMPLER!r} needs a cold run (config.cold.degradation set at "
                             f"training); this run trained a score model: pick a hot sampler")
    if cold and mode in ("eval", "all", "compare"):
        raise InputError(f"--mode {mode} needs a score model (likelihoods, the sampler study); this run is cold "
                         f"(cold.degradation={config.cold.degradation!r}): use --mode sample, or "
                         f"bench/cold_digits.py for its study")


def fit_prior(config, degradation, train):
    """(kind, prior): the `cold.prior` of this run, a `solvers.DegradedPrior` fitted to D(train, T)
    ("gmm"), or the fixed x_T = D(x0, T) when D forgets x0 ("fixed"; "auto" picks it when
    D(x0, T) is the same for the first 64 training images, else "gmm"). Both add
    N(0, prior_noise^2) per sample."""
    c = config.cold
    x = train.to(torch.float64)
    gen = torch.Generator().manual_seed(config.seed + 17)      # the gaussian case draws its z
    xT = degradation.training_input(x, torch.full((x.shape[0],), degradation.T, dtype=torch.float64), gen)
    head = xT[:64].reshape(min(64, xT.shape[0]), -1)
    constant = bool((head - head[:1]).abs().max() < 1e-9)
    kind = c.prior if c.prior != "auto" else ("fixed" if constant else "gmm")
    if kind == "fixed":
        if not constant:
            raise InputError(f"cold.prior='fixed' needs a degradation whose D(x0, T) forgets x0 (e.g. mask with "
                             f"fraction_max=1); {degradation!r} does not: use cold.prior='gmm'")
        flat = xT[:1].reshape(1, -1)
        return kind, DegradedPrior(torch.ones(1, dtype=torch.float64), flat,
                                   torch.zeros(1, flat.shape[1], flat.shape[1], dtype=torch.float64),
                                   xT.shape[1:], c.prior_noise)
    return kind, DegradedPrior.fit(xT, c.prior_components, c.prior_noise, seed=config.seed)


def cold_drawer(config, workdir, checkpoint, device):
    """(draw(seeds) -> (x, info), model, step, checkpoint path, options) of a cold run: x_T from
    the prior with per-sample seeds, then `solvers.cold_sample` with the restored network."""
    s, c = config.sampling, config.cold
    model, step, ckpt = restore_model(config, workdir, use_ema=s.use_ema, step=checkpoint, device=device)
    degradation = sde_lib.get_degradation(config)
    kind, prior = fit_prior(config, degradation, get_dataset(config).train)
    degrade, restore = degradation.sampling_pair(get_restore_fn(model))
    ts = cold_time_grid(c.steps, degradation.T, dtype=torch.float32, device=device)
    options = {"algorithm": c.algorithm, "steps": c.steps, "degradation": c.degradation, "prior": kind,
               "prior_components": c.prior_components if kind == "gmm" else 1, "prior_noise": c.prior_noise}
    progress = bool(config.training.progress)

    def draw(seeds):
        xT = prior.sample(seeds, dtype=torch.float32, device=device)
        x, info = cold_sample(degrade, restore, xT, ts, c.algorithm, progress=progress)
        info.options.update(options)
        return x, info

    return draw, model, step, ckpt, options
