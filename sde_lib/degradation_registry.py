"""The registry of degradations (`sde_lib.degradations`), like the samplers': a name, a builder
`builder(shape, **options) -> Degradation`, its options with defaults and one line of doc.

    make_degradation("blur", (1, 8, 8), sigma_max=4.0)     # any registered name
    get_degradation(config)                                # from config.cold (None: a hot run)
    register_degradation("fog", Fog, options={"density": 0.5}, doc="...")
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional

from .degradations import Degradation, GaussianBlur, GaussianNoise, Masking, Pixelate, Snow
from .registry import get_sde


@dataclass(frozen=True)
class DegradationSpec:
    """A registered degradation: builder(shape, **options), its options with defaults, one line of doc."""
    name: str
    builder: Callable
    options: Mapping[str, Any]
    doc: str


_REGISTRY: Dict[str, DegradationSpec] = {}
#: Read-only view name -> DegradationSpec of every registered degradation.
DEGRADATIONS: Mapping[str, DegradationSpec] = MappingProxyType(_REGISTRY)


def register_degradation(name: str, builder: Callable, *, options: dict, doc: str = "") -> DegradationSpec:
    """Add a degradation under `name`: `builder(shape, **options) -> Degradation`, `options` its
    keyword options with defaults (every other option is refused by `make_degradation`)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"degradation name must be an identifier string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"degradation {name!r} is already registered")
    if not callable(builder):
        raise ValueError(f"builder of degradation {name!r} must be callable, got {type(builder).__name__}")
    if not isinstance(options, dict):
        raise ValueError(f"options of degradation {name!r} must be a dict {{name: default}}, got {options!r}")
    doc = doc or ((getattr(builder, "__doc__", "") or "").strip().splitlines() or [""])[0]
    spec = DegradationSpec(name, builder, MappingProxyType(dict(options)), doc)
    _REGISTRY[name] = spec
    return spec


def unregister_degradation(name: str) -> DegradationSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown degradation {name!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY.pop(name)


def make_degradation(name: str, shape, **options) -> Degradation:
    """The registered degradation `name` for images of `shape` (C, H, W) with `options`."""
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown degradation {name!r}; expected one of {sorted(_REGISTRY)}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for degradation {name!r}; valid options: "
                         f"{sorted(spec.options)}")
    return spec.builder(shape, **{**spec.options, **options})


def get_degradation(config, sde=None) -> Optional[Degradation]:
    """The degradation of `config.cold` (None for a hot run: `cold.degradation` empty). Options come
    from `config.cold.options.<name>`; the gaussian degradation takes the run's SDE."""
    cold = config.get("cold", None)
    name = cold.get("degradation", "") if cold is not None else ""
    if not name:
        return None
    block = (cold.get("options", {}) or {}).get(name, {}) or {}
    opts = dict(block.to_dict() if hasattr(block, "to_dict") else block)
    for k, v in list(opts.items()):
        if isinstance(v, list):
            opts[k] = tuple(v)
    if name == "gaussian":
        opts["sde"] = sde if sde is not None else get_sde(config)
    shape = (config.data.num_channels, config.data.image_size, config.data.image_size)
    return make_degradation(name, shape, **opts)


register_degradation("blur", GaussianBlur, options={"sigma_max": 6.0, "power": 1.0},
                     doc="cumulative Gaussian blur, sigma_blur(t) = sigma_max (t/T)^power, reflecting borders")
register_degradation("mask", Masking, options={"order": "centre", "fraction_max": 1.0, "fill": 0.0, "seed": 0},
                     doc="pixel mask growing from the centre or in a seeded random order, masked fraction "
                         "fraction_max t/T")
register_degradation("pixelate", Pixelate, options={"resolutions": None},
                     doc="pixelation down a ladder of resolutions (default: halving to 1 pixel), linear in "
                         "between")
register_degradation("snow", Snow, options={"amount": 1.0, "density": 0.25, "white": 1.0, "seed": 0},
                     doc="a fixed seeded snow pattern blended in, alpha(t) = amount t/T")
register_degradation("gaussian", GaussianNoise, options={"sde": None, "z": None},
                     doc="the hot case m(t) x0 + s(t) z of an SDE, z fixed")
