"""The training loop: denoising score matching with Adam, warm-up, clipping, EMA and
atomic checkpoints; exact resume.

`train(config, workdir)` is the whole loop. It keeps no global state of its own (the
caller sets thread counts; `run.py` does), takes the data and the rank/world size as
arguments, and accepts `wrap_model` (e.g. `lambda m: DistributedDataParallel(m)`) so a
multi-process launcher can wrap it without a rewrite. Only rank 0 writes files.

Randomness: model initialisation uses torch.manual_seed(config.seed); minibatches come
from a `BatchSampler` with its own generator (seed + 1), and the loss's t and z from a
second generator (seed + 2); dropout uses the global torch RNG. All of their states go
into every checkpoint, so a run restarted from step k takes the same steps k+1, k+2, ...
as an uninterrupted one, bit for bit on the same machine and thread count.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

import sde_lib
from models import get_model, get_score_fn

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .data import BatchSampler, Dataset, dequantize, get_dataset
from .ema import EMA
from .losses import get_loss_fn


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN/inf; the last checkpoint is left as it was."""


@dataclass
class TrainState:
    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    step: int
    checkpoint: Optional[str]


def check_workdir(workdir: str) -> None:
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir!r} exists and is not a directory")


def _check_training_config(t) -> None:
    def need(cond, msg):
        if not cond:
            raise ValueError(msg)
    need(isinstance(t.n_iters, int) and t.n_iters >= 0, f"training.n_iters must be an int >= 0, got {t.n_iters!r}")
    need(isinstance(t.batch_size, int) and t.batch_size > 0,
         f"training.batch_size must be an int > 0, got {t.batch_size!r}")
    need(t.snapshot_freq > 0, f"training.snapshot_freq must be > 0, got {t.snapshot_freq!r}")
    need(t.log_freq > 0, f"training.log_freq must be > 0, got {t.log_freq!r}")
    need(t.keep >= 1, f"training.keep must be >= 1, got {t.keep!r}")
    need(t.lr > 0 and math.isfinite(t.lr), f"training.lr must be > 0, got {t.lr!r}")
    need(t.warmup >= 0, f"training.warmup must be >= 0, got {t.warmup!r}")
    need(t.grad_clip >= 0, f"training.grad_clip must be >= 0 (0 disables clipping), got {t.grad_clip!r}")


def build_optimizer(config, model: nn.Module) -> torch.optim.Optimizer:
    t = config.training
    return torch.optim.Adam(model.parameters(), lr=t.lr, betas=(t.beta1, 0.999), eps=t.adam_eps,
                            weight_decay=t.weight_decay, foreach=True)


def build_state(config) -> TrainState:
    """Fresh model (seeded), EMA and optimiser."""
    torch.manual_seed(config.seed)
    model = get_model(config)
    ema = EMA(model, config.training.ema_decay, warmup=config.training.get("ema_warmup", True))
    return TrainState(model, ema, build_optimizer(config, model), 0, None)


def restore_model(config, workdir: str, use_ema: bool = True):
    """(model in eval mode, step, checkpoint path) from the latest checkpoint of `workdir`."""
    ckpt = latest_checkpoint(os.path.join(workdir, "checkpoints"))
    if ckpt is None:
        raise ValueError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')!r}; run --mode train first")
    state = load_checkpoint(ckpt)
    model = get_model(config)
    try:
        model.load_state_dict(state["ema"]["model"] if use_ema else state["model"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint {ckpt!r} does not fit the model built from the config: "
                         f"{str(e).splitlines()[0]}") from None
    return model.eval(), int(state["step"]), ckpt


def train(config, workdir: str, dataset: Optional[Dataset] = None, rank: int = 0, world_size: int = 1,
          wrap_model: Optional[Callable[[nn.Module], nn.Module]] = None,
          progress: Optional[bool] = None) -> TrainState:
    """Train (or resume) the score model of `config` in `workdir`; return the final state.

    Writes `workdir/checkpoints/checkpoint_<step>.pt` every `training.snapshot_freq` steps
    and at the end, and `workdir/metrics.jsonl` (step, loss, lr, time) every `log_freq`.
    Raises NonFiniteLossError on a NaN/inf loss or gradient, before the optimiser step.
    """
    tcfg = config.training
    _check_training_config(tcfg)
    check_workdir(workdir)
    sde = sde_lib.get_sde(config)
    dataset = dataset if dataset is not None else get_dataset(config)
    is_main = rank == 0
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if is_main:
        os.makedirs(ckpt_dir, exist_ok=True)

    state = build_state(config)
    model, ema, opt = state.model, state.ema, state.optimizer
    sampler = BatchSampler(dataset.train.shape[0], tcfg.batch_size,
                           torch.Generator().manual_seed(config.seed + 1), rank, world_size)
    noise_gen = torch.Generator().manual_seed(config.seed + 2 + 1000 * rank)

    ckpt = latest_checkpoint(ckpt_dir)
    if ckpt is not None:
        saved = load_checkpoint(ckpt)
        try:
            model.load_state_dict(saved["model"])
        except RuntimeError as e:
            raise ValueError(f"checkpoint {ckpt!r} does not fit the model built from the config "
                             f"(different model settings?): {str(e).splitlines()[0]}") from None
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["optimizer"])
        sampler.load_state_dict(saved["sampler"])
        noise_gen.set_state(saved["noise_generator"])
        torch.set_rng_state(saved["torch_rng"])
        state.step, state.checkpoint = int(saved["step"]), ckpt

    train_model = wrap_model(model) if wrap_model is not None else model
    score_fn = get_score_fn(sde, train_model, train=True)
    loss_fn = get_loss_fn(sde, tcfg.continuous, tcfg.reduce_mean, tcfg.likelihood_weighting,
                          tcfg.get("importance_sampling", False))
    # discrete data: train on uniformly dequantised values, the density that eval scores
    levels = getattr(dataset, "num_levels", None) if tcfg.get("dequantize", True) else None
    params = [p for p in model.parameters() if p.requires_grad]
    data = dataset.train
    # class-conditional training (issue 10): batch labels, dropped to the null label with
    # probability training.label_dropout (classifier-free guidance)
    num_classes = int(config.model.get("num_classes", 0))
    if num_classes:
        from .labels import check_label_dropout, check_labels, drop_labels
        check_labels(dataset, num_classes)
        label_dropout = check_label_dropout(tcfg.get("label_dropout", 0.0))

    def snapshot(step):
        blob = {"step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                "optimizer": opt.state_dict(), "sampler": sampler.state_dict(),
                "noise_generator": noise_gen.get_state(), "torch_rng": torch.get_rng_state()}
        return save_checkpoint(ckpt_dir, blob, step, tcfg.keep)

    if progress is None:
        progress = bool(tcfg.get("progress", True))
    from tqdm import tqdm
    bar = tqdm(total=tcfg.n_iters, initial=state.step, disable=not (progress and is_main),
               desc="train", dynamic_ncols=True, leave=True)
    metrics = open(os.path.join(workdir, "metrics.jsonl"), "a") if is_main else None
    t0, loss_sum, loss_count = time.time(), 0.0, 0
    try:
        for step in range(state.step + 1, tcfg.n_iters + 1):
            lr = tcfg.lr * min(1.0, step / tcfg.warmup) if tcfg.warmup > 0 else tcfg.lr
            for group in opt.param_groups:
                group["lr"] = lr
            idx = sampler.next()
            x = data[idx]
            if levels is not None:
                x = dequantize(x, noise_gen, levels)
            if num_classes:
                y = drop_labels(dataset.train_labels[idx], label_dropout, num_classes, noise_gen)
                loss = loss_fn(lambda xt, t: score_fn(xt, t, y=y), x, noise_gen)
            else:
                loss = loss_fn(score_fn, x, noise_gen)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"training loss is {loss_value} at step {step}; stopped before the update. "
                    f"Last good checkpoint: {state.checkpoint or 'none written yet'} "
                    f"(try a lower training.lr or training.grad_clip > 0)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip, foreach=True)
            else:
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                             for p in params if p.grad is not None]))
            if not torch.isfinite(norm):
                raise NonFiniteLossError(
                    f"gradient norm is {norm.item()} at step {step} (loss {loss_value}); stopped before "
                    f"the update. Last good checkpoint: {state.checkpoint or 'none written yet'}")
            opt.step()
            ema.update(model)
            state.step = step
            loss_sum += loss_value
            loss_count += 1
            bar.update(1)
            if step % tcfg.log_freq == 0 or step == tcfg.n_iters:
                mean_loss = loss_sum / loss_count
                bar.set_postfix(loss=f"{mean_loss:.4g}", refresh=False)
                if metrics is not None:
                    metrics.write(json.dumps({"step": step, "loss": mean_loss, "lr": lr,
                                              "time": round(time.time() - t0, 3)}) + "\n")
                    metrics.flush()
                loss_sum, loss_count = 0.0, 0
            if is_main and (step % tcfg.snapshot_freq == 0 or step == tcfg.n_iters):
                state.checkpoint = snapshot(step)
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    return state
