"""`load_run`: a run directory's model and score in two lines (trained or imported runs).

    from runner import load_run
    run = load_run("runs/cifar10_vp")          # the latest checkpoint, EMA weights
    s = run.score_fn(x, t)                     # x [B, C, H, W], t [B] -> the score [B, C, H, W]
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import models
import sde_lib
from configs.errors import InputError
from training import restore_model

from .common import data_shape
from .rundir import load_saved_config


@dataclass
class LoadedRun:
    """What `load_run` returns: the saved config, its SDE, the network (eval mode), the score
    function `score_fn(x [B, *shape], t [B]) -> [B, *shape]` (models.get_score_fn, with the config's
    parameterisation), and the checkpoint it came from."""
    config: Any
    sde: Any
    model: Any
    score_fn: Callable
    step: int
    checkpoint: str
    workdir: str

    @property
    def shape(self):
        """The shape of one sample: (C, H, W) for images, (dim,) for vectors."""
        return data_shape(self.model)


def load_run(workdir: str, checkpoint: Optional[int] = None, ema: bool = True, device=None) -> LoadedRun:
    """Load the run directory `workdir` (written by `--mode train` or `--mode import`).

    checkpoint: the step of the checkpoint (None: the latest); ema: the EMA weights (else the raw
    ones); device: where the model goes (None: the CPU). InputError naming the directory when it
    holds no saved config or no (matching) checkpoint.
    """
    if not os.path.isdir(workdir):
        raise InputError(f"run directory {workdir!r} does not exist")
    config = load_saved_config(workdir)
    if config is None:
        raise InputError(f"{workdir!r} holds no saved config (config.py); it is not a run directory written by "
                         f"run.py --mode train or --mode import")
    sde = sde_lib.get_sde(config)
    model, step, ckpt = restore_model(config, workdir, use_ema=ema, step=checkpoint, device=device)
    return LoadedRun(config=config, sde=sde, model=model, score_fn=models.get_score_fn(sde, model), step=step,
                     checkpoint=ckpt, workdir=workdir)
