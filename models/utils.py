"""Model registry and the network -> score_fn adapter.

The parameterisation (what the network sees and what its output means) is one object,
`models.parameterization.Parameterization`, chosen by `model.prediction`, `model.label` and
`model.data_range`. Their default "auto" is the SDE's own declared choice:

- VP and sub-VP: the network predicts the noise z in x_t = m(t) x_0 + s(t) z, so
      score(x, t) = -net(x, t) / s(t),
  and it is fed the continuous time t in [eps, T] as its noise label.
- VE: the network output is divided by sigma(t) ("scale_by_sigma" of NCSN++),
      score(x, t) = net(x, log sigma(t)) / sigma(t),
  and it is fed log sigma(t) as its noise label (NCSN++ feeds its Fourier
  embedding log sigma; the label varies over ~log(sigma_max/sigma_min) units).

Both choices make the network's target O(1) at every noise level: the ideal
VP output is E[z | x_t], and the ideal VE output is -E[z | x_t].

`get_model` records the config's choice on the network (`net.parameterization`, a plain dict,
not in the state dict), so `get_score_fn(sde, net)` applies it wherever the network goes
(EMA copies, DDP and autocast wrappers).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

import sde_lib

from .parameterization import Parameterization, check_parameterization

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
    """Build the network named `config.model.name` (see `model_names()`), with the config's
    parameterisation (`model.prediction`, `model.label`, `model.data_range`) recorded on it."""
    name = config.model.get("name", None)
    if name not in _MODELS:
        raise ValueError(f"unknown model name {name!r}; expected one of {model_names()}")
    spec = dict(prediction=config.model.get("prediction", "auto"), label=config.model.get("label", "auto"),
                data_range=tuple(config.model.get("data_range", (-1.0, 1.0))))
    check_parameterization(**spec)
    net = _MODELS[name](config)
    net.parameterization = spec
    return net


def noise_label(sde: sde_lib.SDE, t: Tensor) -> Tensor:
    """The scalar a network on `sde` is conditioned on by default (the SDE's own label:
    log sigma(t) for VE, t for VP and sub-VP). `[B] -> [B]`."""
    return Parameterization(sde).noise_label(t)


def _unwrap(model: nn.Module) -> nn.Module:
    inner = model
    while isinstance(getattr(inner, "module", None), nn.Module):    # DDP, autocast, ... wrappers
        inner = inner.module
    return inner


def parameterization_of(sde: sde_lib.SDE, model: nn.Module) -> Parameterization:
    """The `Parameterization` recorded on `model` by `get_model` (the SDE's default if none)."""
    return Parameterization(sde, **getattr(_unwrap(model), "parameterization", {}))


def get_score_fn(sde: sde_lib.SDE, model: nn.Module, train: bool = False, y=None,
                 parameterization: Optional[Parameterization] = None) -> Callable[[Tensor, Tensor], Tensor]:
    """Wrap `model(x, label)` into a score function `score_fn(x [B, *shape], t [B]) -> [B, *shape]`.

    `train=False` puts the model in eval mode (dropout off) and leaves gradients
    to the caller (samplers use no_grad; the likelihood needs autograd w.r.t. x).
    `train=True` puts it in train mode.

    Class-conditional nets (`model.num_classes > 0`): `y` (an int or `[B]` labels) fixes the
    class; None gives the null label, i.e. the unconditional score a net trained with label
    dropout has learned. The returned function also takes `y=` per call (training passes the
    batch labels). For an unconditional net, y must be None. Prompt-conditional nets take token
    ids `[B, L]` as `y` (None: the empty prompt).

    `parameterization` overrides the one recorded on the model (`parameterization_of`).
    """
    model.train(train)
    param = parameterization_of(sde, model) if parameterization is None else parameterization
    inner = _unwrap(model)
    conditional = getattr(inner, "num_classes", 0) > 0 or getattr(inner, "text_encoder", None) is not None
    if y is not None and not conditional:
        raise ValueError("class labels y given, but the model is unconditional (model.num_classes = 0)")
    default_y = y

    def score_fn(x: Tensor, t: Tensor, y=default_y) -> Tensor:
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape [B] = [{x.shape[0]}], got {tuple(t.shape)}")
        return param(model, x, t, y) if conditional else param(model, x, t)

    score_fn.model = model
    score_fn.sde = sde
    score_fn.parameterization = param
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
