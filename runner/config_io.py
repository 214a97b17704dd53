"""Config files and `--config.a.b=v` overrides typed by the existing field (validation: `configs.schema`)."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys

import ml_collections

from configs.errors import InputError
from configs.schema import validate_plugins


def load_config(path: str):
    if not os.path.isfile(path):
        raise InputError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location("_scoresde_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise InputError(f"cannot load config {path!r}: {type(e).__name__}: {e}") from None
    if not hasattr(module, "get_config"):
        raise InputError(f"config file {path!r} defines no get_config()")
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
    keys = dotted.split(".")
    # sampling.options.<sampler>.<option> blocks are free-form keyword arguments of
    # solvers.sample: new samplers and options may be added from the command line.
    free_form = keys[:2] == ["sampling", "options"] and len(keys) == 4
    node = config
    for i, k in enumerate(keys[:-1]):
        if free_form and isinstance(node, ml_collections.ConfigDict) and k not in node and i == 2:
            node[k] = ml_collections.ConfigDict()
        if not isinstance(node, ml_collections.ConfigDict) or k not in node:
            raise InputError(f"unknown config field 'config.{'.'.join(keys[:i + 1])}'")
        node = node[k]
    last = keys[-1]
    if free_form and isinstance(node, ml_collections.ConfigDict) and last not in node:
        node[last] = _parse_value(text)
        return
    if not isinstance(node, ml_collections.ConfigDict) or last not in node:
        where = ".".join(keys[:-1])
        valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        raise InputError(f"unknown config field 'config.{dotted}'" + (f"; fields of config.{where}: {valid}"
                                                                         if where else ""))
    value = _parse_value(text)
    current = node[last]
    if isinstance(current, str) and not isinstance(value, str):
        value = text          # e.g. --config.data.path=123 stays a string
    if isinstance(current, tuple) and isinstance(value, (int, float, str)):
        value = (value,)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, float) and isinstance(value, str):
        try:
            value = float(text)       # inf, nan (the section's validator decides if they are allowed)
        except ValueError:
            pass
    try:
        node[last] = value
    except (TypeError, ValueError) as e:
        raise InputError(f"bad value {text!r} for config.{dotted} (currently {current!r}): {e}") from None


def load_plugins(config) -> None:
    """Import the modules of `config.plugins` before the config is checked, so the samplers, models and
    data sets they register are known to the schema and every mode. The current directory is searched
    too. InputError for a module that does not exist; an error inside a plugin keeps its traceback."""
    validate_plugins(config)
    if config.plugins and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    for name in config.plugins:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:      # only a missing module is an input error; a bug in it keeps its traceback
            if e.name not in (name, name.split(".")[0]):
                raise
            raise InputError(f"config.plugins: no module named {name!r} (looked in the current directory "
                             f"{os.getcwd()!r} and on sys.path)") from None
