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
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

Tensor = torch.Tensor

import sde_lib
from models import get_model, get_restore_fn, get_score_fn

import training.distributed as distributed
from .checkpoint import (TRAIN_KEYS, WEIGHT_KEYS, check_state_dict, find_checkpoint, latest_checkpoint,
                         load_checkpoint, resume_hint, save_checkpoint, set_aside_later)
from .device import AutocastModule, grad_scaler, resolve_device
from .device import generator as device_generator
from .data import BatchSampler, Dataset, dequantize, get_dataset
from .ema import EMA
from .workdir import WorkdirLock, check_workdir, clean_stale_temp, open_metrics
from .losses import get_cold_loss_fn, get_loss_fn
from .labels import check_labels, drop_labels
from .prompts import VOCAB_FILE, PromptStream, prompt_spec, prompt_training_set, uses_prompts
from .monitor import Monitor
from .threads import ThreadGovernor
from configs.errors import InputError


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm, or weights) became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainState:
    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    step: int
    checkpoint: Optional[str]


def build_optimizer(config, model: nn.Module) -> torch.optim.Optimizer:
    t = config.training
    return torch.optim.Adam(model.parameters(), lr=t.lr, betas=(t.beta1, 0.999), eps=t.adam_eps,
                            weight_decay=t.weight_decay, foreach=True)


def build_state(config, device: Optional[torch.device] = None, objective=None) -> TrainState:
    """Fresh model (seeded; initialised on the CPU, so identical on every device), EMA, optimiser.
    `objective` (e.g. `training.latent.AutoencoderObjective`) builds another network than the score net."""
    torch.manual_seed(config.seed)
    model = get_model(config) if objective is None else objective.build(config)
    if device is not None:
        model = model.to(device)
    if config.training.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, config.training.ema_decay, warmup=config.training.ema_warmup)
    return TrainState(model, ema, build_optimizer(config, model), 0, None)


def restore_model(config, workdir: str, use_ema: bool = True, step: Optional[int] = None,
                  device: Optional[torch.device] = None):
    """(model in eval mode, step, checkpoint path) from the checkpoint of `step` (None: the
    latest) in `workdir`. ValueError naming the file for a malformed or non-finite checkpoint."""
    ckpt = find_checkpoint(os.path.join(workdir, "checkpoints"), step)
    state = load_checkpoint(ckpt, WEIGHT_KEYS)
    where = "ema.model" if use_ema else "model"
    weights = state["ema"]["model"] if use_ema else state["model"]
    check_state_dict(ckpt, where, weights)
    model = get_model(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise InputError(f"checkpoint {ckpt!r} does not fit the model built from the config: "
                         f"{str(e).splitlines()[0]}") from None
    if device is not None:
        model = model.to(device)
    return model.eval(), int(state["step"]), ckpt


def _weights_finite(*modules) -> bool:
    flags = [torch.isfinite(p).all() for m in modules for p in m.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def _per_rank(value, rank, world_size):
    """A per-rank state saved by `world_size` ranks (a list), or a single-process one (not a list)."""
    if not isinstance(value, list):
        return value if world_size == 1 else None
    if len(value) != world_size:
        return None
    return value[rank]


def train(config, workdir: str, dataset: Optional[Dataset] = None, rank: Optional[int] = None,
          world_size: Optional[int] = None, wrap_model: Optional[Callable[[nn.Module], nn.Module]] = None,
          progress: Optional[bool] = None, on_samples: Optional[Callable] = None,
          resume_from: Optional[int] = None, adapt_threads: bool = False, objective=None) -> TrainState:
    """Train (or resume) the score model of `config` in `workdir`; return the final state.

    `adapt_threads` (run.py passes it for `training.num_threads=-1` in one process): torch's thread
    count follows the CPUs other processes leave free (`training.threads.ThreadGovernor`).
    `objective` replaces the score model and its loss by `objective.build(config)` and
    `objective.loss(model, x, generator)` (held-out: `objective.heldout`), e.g. an autoencoder.

    Resumes from the latest checkpoint, or from step `resume_from` when every later checkpoint is
    unreadable (those are kept as `<name>.corrupt`; a readable later one is an InputError).

    Writes `workdir/checkpoints/checkpoint_<step>.pt` every `training.snapshot_freq` steps
    and at the end, and `workdir/metrics.jsonl` (step, loss, lr, time every `log_freq`;
    step, eval_loss, eval_loss_stderr every `eval_freq`). Every `sample_freq` steps it draws
    `sample_num` samples from the EMA model with fixed seeds and passes (step, samples) to
    `on_samples`. Holds the workdir lock (rank 0) for the whole run.

    Device: `config.device`; precision: `training.precision` (see training.device). Under
    torchrun (a started process group) the model is wrapped in DistributedDataParallel
    (`wrap_model` replaces that wrapper), each rank draws its own shard of every batch
    (`training.batch_size` is the global batch) with its own noise seed, and rank 0 writes.

    Raises NonFiniteLossError on a NaN/inf loss or gradient (before the update) or non-finite
    weights at a snapshot (nothing written), naming the last checkpoint known to be good.
    """
    tcfg = config.training
    check_workdir(workdir)
    here = distributed.current()
    rank = here.rank if rank is None else rank
    world_size = here.world_size if world_size is None else world_size
    if tcfg.batch_size % world_size:
        raise InputError(f"training.batch_size={tcfg.batch_size} is the global batch and must be divisible by "
                         f"the number of processes ({world_size})")
    device = resolve_device(config.device)
    precision = tcfg.precision
    sde = sde_lib.get_sde(config)
    dataset = dataset if dataset is not None else get_dataset(config)
    if uses_prompts(config):        # prompt-conditional: held-out combinations leave the train split
        dataset = prompt_training_set(dataset, prompt_spec(config))
    is_main = rank == 0
    ckpt_dir = os.path.join(workdir, "checkpoints")
    lock = None
    if is_main:
        os.makedirs(ckpt_dir, exist_ok=True)
        lock = WorkdirLock(workdir).acquire()
    try:
        if is_main:
            clean_stale_temp(ckpt_dir, all_pids=True)   # we hold the lock: no one else writes here
            if uses_prompts(config):
                prompt_spec(config).save(os.path.join(workdir, VOCAB_FILE))
        distributed.barrier()
        return _train(config, workdir, dataset, sde, device, precision, rank, world_size, wrap_model,
                      progress, on_samples, Monitor, resume_from, adapt_threads, objective)
    finally:
        if lock is not None:
            lock.release()


def _train(config, workdir, dataset, sde, device, precision, rank, world_size, wrap_model, progress,
           on_samples, Monitor, resume_from=None, adapt_threads=False, objective=None) -> TrainState:
    tcfg = config.training
    is_main = rank == 0
    ckpt_dir = os.path.join(workdir, "checkpoints")
    state = build_state(config, device, objective)
    model, ema, opt = state.model, state.ema, state.optimizer
    scaler = grad_scaler(device, precision)
    seed = config.seed
    sampler = BatchSampler(dataset.train.shape[0], tcfg.batch_size // world_size,
                           torch.Generator().manual_seed(seed + 1), rank, world_size)
    noise_gen = device_generator(device, seed + 2 + 1000 * rank)

    if is_main and resume_from is not None:
        chosen = find_checkpoint(ckpt_dir, resume_from)
        for moved in set_aside_later(ckpt_dir, resume_from, TRAIN_KEYS):
            print(f"note: set aside the unreadable later checkpoint as {moved}", flush=True)
    ckpt = distributed.broadcast_object((chosen if resume_from is not None else latest_checkpoint(ckpt_dir))
                                        if is_main else None)
    if ckpt is not None:
        try:
            saved = load_checkpoint(ckpt, TRAIN_KEYS)
            check_state_dict(ckpt, "model", saved["model"])
        except InputError as e:
            raise InputError(f"{e}; {resume_hint(ckpt_dir, ckpt)}") from None
        try:
            model.load_state_dict(saved["model"])
            ema.load_state_dict(saved["ema"])
            opt.load_state_dict(saved["optimizer"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise InputError(f"checkpoint {ckpt!r} does not fit the model built from the config "
                             f"(different model settings?): {str(e).splitlines()[0]}") from None
        step0 = int(saved["step"])
        streams = [_per_rank(saved.get(k), rank, world_size)
                   for k in ("sampler", "noise_generator", "torch_rng")]
        if any(v is None for v in streams):
            # saved by another number of processes: restart the data and noise streams from (seed, step)
            if is_main:
                print(f"note: {ckpt} was written by a different number of processes; data order and noise "
                      f"restart from seed {seed} at step {step0}", flush=True)
            sampler.generator.manual_seed(seed + 1 + 7919 * step0)
            noise_gen.manual_seed(seed + 2 + 1000 * rank + 7919 * step0)
        else:
            sampler.load_state_dict(streams[0])
            noise_gen.set_state(streams[1])
            torch.set_rng_state(streams[2])
            cuda_rng = _per_rank(saved.get("cuda_rng"), rank, world_size)
            if device.type == "cuda" and cuda_rng is not None:     # dropout on the GPU
                torch.cuda.set_rng_state(cuda_rng, device)
        if scaler is not None and saved.get("grad_scaler"):
            scaler.load_state_dict(saved["grad_scaler"])
        state.step, state.checkpoint = step0, ckpt
        if is_main:
            print(f"resuming from step {step0} (checkpoint {ckpt})", flush=True)

    train_model = model
    if wrap_model is not None:
        train_model = wrap_model(model)
    elif world_size > 1 and distributed.current().enabled:
        from torch.nn.parallel import DistributedDataParallel
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        # torch's reducer warns when a gradient's strides differ from its bucket's; for the 1x1
        # convolutions' weights [C, C', 1, 1] they differ only on the size-1 dimensions (e.g. [16, 1, 16, 16]
        # against [16, 1, 1, 1]), the same memory layout: a false alarm, printed by every rank
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if tcfg.compile:
        train_model = torch.compile(train_model)
    if precision != "fp32":
        train_model = AutocastModule(train_model, device, precision)
    degradation = sde_lib.get_degradation(config, sde) if objective is None else None
    if objective is not None:   # another network and loss, e.g. an autoencoder: loss_fn(model, x, gen)
        score_fn, loss_fn = train_model, objective.loss
    elif degradation is None:
        score_fn = get_score_fn(sde, train_model, train=True)
        loss_fn = get_loss_fn(sde, tcfg.continuous, tcfg.reduce_mean, tcfg.likelihood_weighting,
                              tcfg.importance_sampling)
    else:   # cold diffusion: a restoration network R(D(x0, t), t) ~ x0
        score_fn = get_restore_fn(train_model, train=True)
        loss_fn = get_cold_loss_fn(degradation, config.cold.loss)
    # discrete data: train on uniformly dequantised values, the density that eval scores
    levels = getattr(dataset, "num_levels", None) if tcfg.dequantize and objective is None else None
    params = [p for p in model.parameters() if p.requires_grad]
    data = _place_data(dataset.train, device)
    channels_last = tcfg.channels_last and data.dim() == 4
    monitor = Monitor(config, sde, dataset, ema, device, workdir, on_samples, objective) if is_main else None
    # class-conditional training: batch labels, dropped to the null label with
    # probability training.label_dropout (classifier-free guidance)
    num_classes = config.model.num_classes
    if num_classes:
        check_labels(dataset, num_classes)
        label_dropout = tcfg.label_dropout
        train_labels = dataset.train_labels.to(data.device)
    prompts = None
    if uses_prompts(config):        # a random paraphrase per image, the empty prompt w.p. label_dropout
        if dataset.train_labels is None:
            raise InputError(f"prompts need class labels, but data set {dataset.name!r} has none")
        prompts = PromptStream(prompt_spec(config), dataset.train, dataset.train_labels)

    def snapshot(step, protect):
        if not _weights_finite(model, ema.model):
            raise NonFiniteLossError(
                f"weights became non-finite by step {step}; no checkpoint written. Last good checkpoint: "
                f"{protect or 'none written yet'} (try a lower training.lr or training.grad_clip > 0)")
        per_rank = distributed.all_gather_objects(
            {"sampler": sampler.state_dict(), "noise_generator": noise_gen.get_state(),
             "torch_rng": torch.get_rng_state(),
             **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {})})
        if not is_main:
            return None
        blob = {"step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                "optimizer": opt.state_dict(), "world_size": world_size,
                **{k: [r[k] for r in per_rank] for k in per_rank[0]}}
        if scaler is not None:
            blob["grad_scaler"] = scaler.state_dict()
        return save_checkpoint(ckpt_dir, blob, step, tcfg.keep, protect=protect)

    if progress is None:
        progress = tcfg.progress
    from tqdm import tqdm
    bar = tqdm(total=tcfg.n_iters, initial=state.step, disable=not (progress and is_main),
               desc="train", dynamic_ncols=True, leave=True)
    metrics = open_metrics(os.path.join(workdir, "metrics.jsonl")) if is_main else None
    # `good`: last checkpoint with finite weights whose weights also gave a finite loss;
    # `pending`: written, but its loss is not known yet (it is the next step's loss).
    good, pending = state.checkpoint, None
    t0, loss_sum, loss_count = time.time(), 0.0, 0
    governor = ThreadGovernor() if adapt_threads and world_size == 1 else None
    try:
        for step in range(state.step + 1, tcfg.n_iters + 1):
            lr = tcfg.lr * min(1.0, step / tcfg.warmup) if tcfg.warmup > 0 else tcfg.lr
            for group in opt.param_groups:
                group["lr"] = lr
            idx = sampler.next().to(data.device)
            x = data[idx].to(device, non_blocking=True)
            if levels is not None:      # discrete data: a fresh uniform dequantisation every step
                x = dequantize(x, noise_gen, levels)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if num_classes:
                y = drop_labels(train_labels[idx].to(device, non_blocking=True), label_dropout, num_classes,
                                noise_gen)
                loss = loss_fn(lambda xt, t: score_fn(xt, t, y=y), x, noise_gen)
            elif prompts is not None:
                y = prompts(idx, noise_gen, tcfg.label_dropout).to(device)
                loss = loss_fn(lambda xt, t: score_fn(xt, t, y=y), x, noise_gen)
            else:
                loss = loss_fn(score_fn, x, noise_gen)
            opt.zero_grad(set_to_none=True)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            if scaler is not None:
                scaler.unscale_(opt)
            if tcfg.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip, foreach=True)
            else:
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                             for p in params if p.grad is not None]))
            # the one host sync per step: loss and gradient norm (summed over ranks: every rank decides alike)
            flags = distributed.all_reduce_sum(torch.stack([loss.detach().float(), norm.detach().float()]))
            loss_value, norm_value = flags.tolist()
            loss_value /= world_size
            if not math.isfinite(loss_value) or (scaler is None and not math.isfinite(norm_value)):
                what = f"training loss is {loss_value}" if not math.isfinite(loss_value) else \
                    f"gradient norm is {norm_value} (loss {loss_value})"
                extra = (f"; {pending} was written at the step before, but the loss at its weights is "
                         f"non-finite" if pending else "")
                raise NonFiniteLossError(
                    f"{what} at step {step}; stopped before the update. Last good checkpoint (finite weights "
                    f"and loss): {good or 'none written yet'}{extra} (try a lower training.lr or "
                    f"training.grad_clip > 0)")
            if pending:
                good, pending = pending, None
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
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
                    row = {"step": step, "loss": mean_loss, "lr": lr, "time": round(time.time() - t0, 3)}
                    if governor is not None:
                        row["threads"] = torch.get_num_threads()
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                loss_sum, loss_count = 0.0, 0
            if governor is not None and (note := governor.tick()) is not None and is_main:
                bar.write(note)
            if monitor is not None:
                monitor.after_step(step, metrics)
            if step % tcfg.snapshot_freq == 0 or step == tcfg.n_iters:
                written = snapshot(step, good)
                if is_main:
                    state.checkpoint = pending = written
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    return state


def _place_data(train: Tensor, device: torch.device) -> Tensor:
    """The training split on `device` when it takes under a quarter of the device's memory
    (else pinned CPU memory, copied batch by batch)."""
    if device.type == "cpu":
        return train
    if device.type == "cuda":
        budget = torch.cuda.get_device_properties(device).total_memory // 4
        if train.numel() * train.element_size() > budget:
            return train.pin_memory()
    return train.to(device)
