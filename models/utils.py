"""Model registry and the network -> score_fn adapter.

Parameterisation (the one seam between networks and SDEs):

- VP and sub-VP: the network predicts the noise z in x_t = m(t) x_0 + s(t) z, so
      score(x, t) = -net(x, t) / s(t),
  and it is fed the continuous time t in [eps, T] as its noise label.
- VE: the network output is divided by sigma(t) ("scale_by_sigma" of NCSN++),
      score(x, t) = net(x, log sigma(t)) / sigma(t),
  and it is fed log sigma(t) as its noise label (NCSN++ feeds its Fourier
  embedding log sigma; the label varies over ~log(sigma_max/sigma_min) units).

Both choices make the network's target O(1) at every noise level: the ideal
VP output is E[z | x_t], and the ideal VE output is -E[z | x_t].
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn

import sde_lib
from sde_lib import VESDE, expand_as_batch

Tensor = torch.Tensor

_MODELS: Dict[str, Callable] = {}


def register_model(name: str):
    """Decorator: register `builder(config) -> nn.Module` under `name` (refused if the name is taken)."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered; choose another name")

    def deco(builder):
        _MODELS[name] = builder
        return builder
    return deco


def model_names():
    return sorted(_MODELS)


def get_model(config) -> nn.Module:
    """Build the network named `config.model.name` (see `model_names()`)."""
    name = config.model.get("name", None)
    if name not in _MODELS:
        raise ValueError(f"unknown model name {name!r}; expected one of {model_names()}")
    return _MODELS[name](config)


def noise_label(sde: sde_lib.SDE, t: Tensor) -> Tensor:
    """The scalar the network is conditioned on: log sigma(t) for VE, t otherwise. `[B] -> [B]`."""
    if isinstance(sde, VESDE):
        return torch.log(sde.sigma(t))
    return t


def get_score_fn(sde: sde_lib.SDE, model: nn.Module, train: bool = False, y=None) -> Callable[[Tensor, Tensor], Tensor]:
    """Wrap `model(x, label)` into a score function `score_fn(x [B, *shape], t [B]) -> [B, *shape]`.

    `train=False` puts the model in eval mode (dropout off) and leaves gradients
    to the caller (samplers use no_grad; the likelihood needs autograd w.r.t. x).
    `train=True` puts it in train mode.

    Class-conditional nets (`model.num_classes > 0`): `y` (an int or `[B]` labels) fixes the
    class; None gives the null label, i.e. the unconditional score a net trained with label
    dropout has learned. The returned function also takes `y=` per call (training passes the
    batch labels). For an unconditional net, y must be None.
    """
    model.train(train)
    is_ve = isinstance(sde, VESDE)
    inner = model
    while isinstance(getattr(inner, "module", None), nn.Module):    # DDP, autocast, ... wrappers
        inner = inner.module
    conditional = getattr(inner, "num_classes", 0) > 0
    if y is not None and not conditional:
        raise ValueError("class labels y given, but the model is unconditional (model.num_classes = 0)")
    default_y = y

    def score_fn(x: Tensor, t: Tensor, y=default_y) -> Tensor:
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape [B] = [{x.shape[0]}], got {tuple(t.shape)}")
        out = model(x, noise_label(sde, t), y) if conditional else model(x, noise_label(sde, t))
        _, std = sde.marginal_coeffs(t)
        if is_ve:
            return out / expand_as_batch(std, out)
        return -out / expand_as_batch(std, out)

    score_fn.model = model
    score_fn.sde = sde
    return score_fn


def get_restore_fn(model: nn.Module, train: bool = False) -> Callable[[Tensor, Tensor], Tensor]:
    """A restoration network of cold diffusion as `restore(x_t [B, *shape], t [B]) -> x0_hat`:
    the network predicts x0 directly and is fed the degradation's time t as its label
    (Bansal et al. 2022). `train` sets train/eval mode as in `get_score_fn`."""
    model.train(train)

    def restore(x: Tensor, t: Tensor) -> Tensor:
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape [B] = [{x.shape[0]}], got {tuple(t.shape)}")
        return model(x, t.to(x.dtype))

    restore.model = model
    return restore
