"""What the training loop watches besides the training loss (rank 0 only):

- every `training.eval_freq` steps, the held-out DSM loss of the EMA model on the first
  `training.eval_num_samples` test examples, with t and z drawn from a generator seeded the
  same way at every evaluation (common random numbers: successive values differ only
  because the weights did), and its standard error over examples; a row
  `{"step", "eval_loss", "eval_loss_stderr"}` in metrics.jsonl;
- every `training.sample_freq` steps, `training.sample_num` samples of the EMA model with
  `config.sampling.sampler` (its options and `sampling.steps`) from fixed per-sample seeds,
  handed to the `on_samples(step, x)` callback (run.py saves a grid per step).
"""
from __future__ import annotations

import json
import math

import torch

import solvers
from models import get_score_fn

from .distributed import sample_seeds
from .losses import discrete_levels, discrete_loss_scale, dsm_loss_per_sample


class Monitor:
    def __init__(self, config, sde, dataset, ema, device, workdir, on_samples=None, objective=None):
        t = config.training
        self.objective = objective      # held-out objective.heldout instead of the DSM loss; no samples
        self.config, self.sde, self.ema, self.device = config, sde, ema, device
        self.eval_freq, self.sample_freq = int(t.get("eval_freq", 0)), int(t.get("sample_freq", 0))
        self.on_samples = on_samples
        n = min(int(t.get("eval_num_samples", 512)), dataset.test.shape[0])
        self.heldout = dataset.test[:n]
        self.batch_size = t.batch_size
        self.shape = tuple(dataset.train.shape[1:])

    def after_step(self, step: int, metrics) -> None:
        if self.eval_freq and step % self.eval_freq == 0:
            mean, se = self.heldout_loss()
            if metrics is not None:
                metrics.write(json.dumps({"step": step, "eval_loss": mean, "eval_loss_stderr": se}) + "\n")
                metrics.flush()
        if self.sample_freq and step % self.sample_freq == 0 and self.on_samples is not None \
                and self.objective is None:
            self.on_samples(step, self.samples())

    @torch.no_grad()
    def heldout_loss(self):
        """Mean and standard error of the per-example DSM loss on the held-out examples."""
        tc = self.config.training
        score_fn = get_score_fn(self.sde, self.ema.model, train=False)
        gen = torch.Generator(device=self.device if self.device.type in ("cpu", "cuda") else "cpu")
        gen.manual_seed(self.config.seed + 12345)
        losses = []
        for i in range(0, self.heldout.shape[0], self.batch_size):
            x0 = self.heldout[i:i + self.batch_size].to(self.device)
            B = x0.shape[0]
            if self.objective is not None:
                losses.append(self.objective.heldout(self.ema.model, x0, gen).double().cpu())
                continue
            if tc.continuous:
                t = self.sde.eps + (self.sde.T - self.sde.eps) * torch.rand(B, generator=gen, device=x0.device)
            else:
                t = discrete_levels(self.sde, B, gen, x0.dtype, x0.device)
            z = torch.randn(x0.shape, generator=gen, device=x0.device)
            losses.append(dsm_loss_per_sample(self.sde, score_fn, x0, t, z, tc.reduce_mean,
                                              tc.likelihood_weighting and tc.continuous).double().cpu())
        v = torch.cat(losses)
        if not tc.continuous and discrete_loss_scale(self.sde) != 1.0:      # SMLD's 1/2
            v = discrete_loss_scale(self.sde) * v
        se = (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else float("nan")
        return v.mean().item(), se

    def samples(self) -> torch.Tensor:
        s = self.config.sampling
        n = int(self.config.training.get("sample_num", 64))
        options = dict(s.options.get(s.sampler, {}) or {})
        if s.sampler != "ode" and "steps" not in options:
            options["steps"] = s.steps
        score_fn = get_score_fn(self.sde, self.ema.model, train=False)
        x, _ = solvers.sample(self.sde, score_fn, (n, *self.shape), sampler=s.sampler,
                              seeds=sample_seeds(s.seed, 0, n), denoise=s.denoise,
                              device=self.device, **options)
        return x.cpu()
