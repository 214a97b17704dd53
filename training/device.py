"""Devices and numeric precision.

`resolve_device(name)` maps `config.device` to a `torch.device`:
"auto" (cuda if available, else mps, else cpu), "cpu", "cuda", "cuda:N", "mps". Under
torchrun, "auto"/"cuda" mean this process's GPU, `cuda:LOCAL_RANK`.

`training.precision` selects the training arithmetic through `torch.autocast`:
"fp32" (none), "bf16" (bfloat16 autocast: CUDA and CPU), "fp16" (float16 autocast with a
GradScaler: meant for CUDA; also runs on CPU). Only the network's forward pass runs under
autocast; the loss, the optimiser and the EMA stay in float32. Sampling and likelihoods
always run in float32 (or the dtype the caller asks for), whatever the training precision.
"""
from __future__ import annotations

import contextlib
import os
import re

import torch
from torch import nn
from configs.errors import InputError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name) -> None:
    """ValueError unless `name` is a device spelling we accept (availability is checked later)."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise InputError(f"config.device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {name!r}")


def resolve_device(name: str = "auto", local_rank: int = None) -> torch.device:
    """The torch.device for `config.device`; ValueError if it is not available here."""
    check_device_name(name)
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        else:
            return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"config.device={name!r} but CUDA is not available on this machine "
                             f"(torch {torch.__version__}); use 'cpu' or 'auto'")
        index = int(name.split(":")[1]) if ":" in name else local_rank
        if index >= torch.cuda.device_count():
            raise InputError(f"config.device={name!r} (index {index}) but only {torch.cuda.device_count()} "
                             f"CUDA device(s) are visible")
        return torch.device("cuda", index)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("config.device='mps' but MPS is not available on this machine")
    return torch.device(name)


def check_precision(precision) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"training.precision must be one of {list(PRECISIONS)}, got {precision!r}")


def autocast(device: torch.device, precision: str):
    """The autocast context for `precision` on `device` (a null context for fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class AutocastModule(nn.Module):
    """Runs `module` under autocast and returns float32, so the loss is computed in float32."""

    def __init__(self, module: nn.Module, device: torch.device, precision: str):
        super().__init__()
        self.module, self.device, self.precision = module, device, precision

    def forward(self, x, t, *args, **kwargs):      # extra arguments: e.g. class labels y
        with autocast(self.device, self.precision):
            out = self.module(x, t, *args, **kwargs)
        return out.float()


def grad_scaler(device: torch.device, precision: str):
    """A GradScaler for fp16 (dynamic loss scaling), else None."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A torch.Generator on `device` seeded with `seed` (mps generators live on the CPU)."""
    dev = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    return torch.Generator(device=dev).manual_seed(int(seed))
