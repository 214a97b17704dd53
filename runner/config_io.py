"""Config files, `--config.a.b=v` overrides typed by the existing field, and early validation."""
from __future__ import annotations

import ast
import importlib.util
import os


def load_config(path: str):
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location("_scoresde_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ValueError(f"cannot load config {path!r}: {type(e).__name__}: {e}") from None
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path!r} defines no get_config()")
    return module.get_config()


def _parse_value(text: str):
    """Python literal if it parses as one (numbers, tuples, True/None), else the raw string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(config, dotted: str, text: str) -> None:
    """Set config.<dotted> from its command-line text, keeping the field's type."""
    import ml_collections
    keys = dotted.split(".")
    # sampling.options.<sampler>.<option> blocks are free-form keyword arguments of
    # solvers.sample: new samplers and options may be added from the command line.
    free_form = keys[:2] == ["sampling", "options"] and len(keys) == 4
    node = config
    for i, k in enumerate(keys[:-1]):
        if free_form and isinstance(node, ml_collections.ConfigDict) and k not in node and i == 2:
            node[k] = ml_collections.ConfigDict()
        if not isinstance(node, ml_collections.ConfigDict) or k not in node:
            raise ValueError(f"unknown config field 'config.{'.'.join(keys[:i + 1])}'")
        node = node[k]
    last = keys[-1]
    if free_form and isinstance(node, ml_collections.ConfigDict) and last not in node:
        node[last] = _parse_value(text)
        return
    if not isinstance(node, ml_collections.ConfigDict) or last not in node:
        where = ".".join(keys[:-1])
        valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        raise ValueError(f"unknown config field 'config.{dotted}'" + (f"; fields of config.{where}: {valid}"
                                                                         if where else ""))
    value = _parse_value(text)
    current = node[last]
    if isinstance(current, str) and not isinstance(value, str):
        value = text          # e.g. --config.data.path=123 stays a string
    if isinstance(current, tuple) and isinstance(value, (int, float)):
        value = (value,)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        node[last] = value
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad value {text!r} for config.{dotted} (currently {current!r}): {e}") from None


def validate_config(config) -> None:
    """Fail early, with one message, on names and values that would fail later."""
    import models
    import sde_lib
    import solvers
    from training.data import DATASETS
    sde_lib.get_sde(config)
    if config.model.name not in models.model_names():
        raise ValueError(f"unknown model name {config.model.name!r}; expected one of {models.model_names()}")
    if config.data.dataset not in DATASETS:
        raise ValueError(f"unknown data set {config.data.dataset!r}; expected one of {list(DATASETS)}")
    if config.sampling.sampler not in solvers.SAMPLERS:
        raise ValueError(f"unknown sampler {config.sampling.sampler!r}; expected one of {list(solvers.SAMPLERS)}")
    _validate_eval(config.eval)
    from training.data import declared_levels
    declared_levels(config.data)
    if config.eval.trace not in ("exact", "hutchinson"):
        raise ValueError(f"unknown eval.trace {config.eval.trace!r}; expected one of ['exact', 'hutchinson']")
    for name in ("training.n_iters", "sampling.num_samples", "eval.num_samples"):
        section, field = name.split(".")
        v = config[section][field]
        if not isinstance(v, int) or v < 0 or (name == "sampling.num_samples" and v == 0):
            raise ValueError(f"config.{name} must be a {'positive' if name.startswith('sampling') else 'non-negative'}"
                             f" int, got {v!r}")
    from .compare_plan import validate_compare
    validate_compare(config.compare)
    if "class_label" in config.sampling:      # guidance settings (issue 10)
        from .guided import check_guidance_config
        check_guidance_config(config)
    if "inpaint" in config:
        from .inpaint import check_inpaint_config
        check_inpaint_config(config)
    if "pretrained" in config:               # published checkpoints (issue 18)
        from .importer import validate_pretrained
        validate_pretrained(config.pretrained)
    if config.training.num_threads < 0:
        raise ValueError(f"config.training.num_threads must be >= 0 (0: torch default), "
                         f"got {config.training.num_threads!r}")
    validate_run_fields(config)


def _validate_eval(e) -> None:
    """eval.* fields of the likelihood evaluation (runner/evaluate.py)."""
    def positive_int(name, v, least=1):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"config.eval.{name} must be an int >= {least}, got {v!r}")
    positive_int("batch_size", e.batch_size)
    positive_int("repeats", e.get("repeats", 1))
    positive_int("probes", e.get("probes", 1))
    positive_int("elbo_n_t", e.get("elbo_n_t", 32), least=2)
    if e.get("estimator", "ode") not in ("ode", "elbo", "both"):
        raise ValueError(f"unknown eval.estimator {e.estimator!r}; expected one of ['both', 'elbo', 'ode']")
    if e.get("dtype", "float32") not in ("float32", "float64"):
        raise ValueError(f"config.eval.dtype must be 'float32' or 'float64', got {e.dtype!r}")
    eps = e.get("eps", None)
    if eps is not None and not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps < 1):
        raise ValueError(f"config.eval.eps must be None (sde.eps) or a number in (0, 1), got {eps!r}")


def validate_run_fields(config) -> None:
    """Device, training, sampling and seed fields (issue 11): types and ranges, before any work."""
    from training.device import check_device_name
    from training.loop import _check_training_config
    check_device_name(config.get("device", "auto"))
    _check_training_config(config.training)

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)
    for name, v in (("seed", config.seed), ("sampling.seed", config.sampling.seed),
                    ("eval.seed", config.eval.seed), ("compare.seed", config.compare.seed),
                    ("data.split_seed", config.data.split_seed)):
        if not is_int(v) or v < 0:
            raise ValueError(f"config.{name} must be an int >= 0, got {v!r}")
    s = config.sampling
    if not is_int(s.get("batch_size", 1)) or s.get("batch_size", 1) < 1:
        raise ValueError(f"config.sampling.batch_size must be an int >= 1, got {s.get('batch_size')!r}")
    if not is_int(s.steps) or s.steps < 1:
        raise ValueError(f"config.sampling.steps must be an int >= 1, got {s.steps!r}")
    for name in ("denoise", "use_ema"):
        if not isinstance(s[name], bool):
            raise ValueError(f"config.sampling.{name} must be True or False, got {s[name]!r}")
    for section in ("eval", "compare"):
        if not isinstance(config[section].use_ema, bool):
            raise ValueError(f"config.{section}.use_ema must be True or False, got {config[section].use_ema!r}")
    if not isinstance(config.training.num_threads, int) or isinstance(config.training.num_threads, bool):
        raise ValueError(f"config.training.num_threads must be an int >= 0, got {config.training.num_threads!r}")
    _check_model_builds(config)


def _check_model_builds(config) -> None:
    """Build the network on the meta device (no memory, no compute): bad model settings fail here."""
    import torch
    import models
    try:
        with torch.device("meta"):
            models.get_model(config)
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"the model settings do not build a network: {type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None

