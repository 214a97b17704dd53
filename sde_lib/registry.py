"""The SDE registry: a new SDE is one class and one `register_sde` line.

    @register_sde("mysde", aliases=("my",))
    class MySDE(SDE):
        prediction, label = "eps", "t"        # its default network parameterisation (or leave None)
        ...

`get_sde(config)` builds the class registered under `config.sde.name`, passing the config
fields that name parameters of the class's `__init__` (missing or None fields take the
class defaults). Nothing outside sde_lib needs to know which SDE it holds: what differs
between SDEs (chains, Langevin alpha, discrete losses, default parameterisation) is a method
or attribute of the class (see `sde_lib.base.SDE`).
"""
from __future__ import annotations

import inspect
from typing import Dict, Tuple, Type

_SDES: Dict[str, type] = {}
_CANONICAL: Dict[str, str] = {}


def register_sde(name: str, aliases: Tuple[str, ...] = ()):
    """Class decorator: register an `SDE` subclass under `name` (and aliases; case-insensitive)."""
    def deco(cls: Type):
        for key in (name, *aliases):
            key = key.lower()
            if key in _SDES and _SDES[key] is not cls:
                raise ValueError(f"SDE name {key!r} is already registered to {_SDES[key].__name__}")
            _SDES[key] = cls
        _CANONICAL[name.lower()] = name.lower()
        cls.registered_name = name.lower()
        return cls
    return deco


def sde_names():
    """The registered SDE names (aliases excluded), sorted."""
    return sorted(_CANONICAL)


def sde_class(name) -> type:
    """The class registered under `name`; ValueError listing the names otherwise."""
    cls = _SDES.get(str(name).lower()) if name is not None else None
    if cls is None:
        raise ValueError(f"unknown SDE name {name!r}; expected one of {sde_names()}")
    return cls


def get_sde(config):
    """Build an SDE from an ml_collections config.

    Accepts a full experiment config (uses `config.sde`) or the `sde` block itself. `name`
    picks the registered class ("vpsde" | "subvpsde" | "vesde" and aliases); every other field
    that is a keyword of the class's `__init__` (`beta_min`, `beta_max`, `schedule`,
    `cosine_s`, `sigma_min`, `sigma_max`, `N`, `eps`, ...) is passed when not None.
    """
    cfg = config.sde if hasattr(config, "sde") and not isinstance(getattr(config, "sde"), str) \
        and hasattr(config.sde, "get") else config
    cls = sde_class(cfg.get("name", None))
    params = inspect.signature(cls.__init__).parameters
    kw = {k: cfg[k] for k in params if k != "self" and cfg.get(k, None) is not None}
    return cls(**kw)
