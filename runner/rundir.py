"""A run directory that remembers its run and never overwrites its results.

- `workdir/config.py`: the config, saved at the first train (and rewritten, with the same
  model/SDE/data, by every later train). Every later mode starts from it, so `--config` is
  optional once a workdir exists; overrides of the trained fields (`FROZEN`: model, sde,
  data) are refused naming the fields; sampling, eval, compare, device... stay free. The file
  is a plain Python literal (loaded with ast.literal_eval, never executed) and also a valid
  `--config` file for a new workdir.
- `new_run_dir(workdir, kind, step, tag)`: `workdir/<kind>/step<step>-<tag>-<NNN>/`, the
  lowest free counter, created atomically (os.mkdir), so two runs never share one.
"""
from __future__ import annotations

import ast
import copy
import math
import os
import pprint
from typing import List, Optional
from .config_io import apply_override, load_config
from configs.default import get_default_config
from training.checkpoint import list_checkpoints
from training.workdir import temp_name
from configs.errors import InputError

FROZEN = ("model", "sde", "data", "cold.degradation", "cold.options")   # what a checkpoint was trained for
CONFIG_NAME = "config.py"

_HEADER = '''"""The config of this run directory, saved by run.py at its first train (rewritten by
later trains; model, sde and data never change). Later modes load it: --config is optional.
It is a plain literal: run.py reads it with ast.literal_eval."""
import ml_collections

CONFIG = '''
_FOOTER = '''


def get_config():
    return ml_collections.ConfigDict(CONFIG)
'''


def config_path(workdir: str) -> str:
    return os.path.join(workdir, CONFIG_NAME)


def _to_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


class _Infinity(float):
    """+-inf written as 1e999 / -1e999, literals that read back as +-inf (e.g. blur sigma_max=inf)."""

    def __repr__(self):
        return "1e999" if self > 0 else "-1e999"


def _literal_infinities(d):
    if isinstance(d, dict):
        return {k: _literal_infinities(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return type(d)(_literal_infinities(v) for v in d)
    return _Infinity(d) if isinstance(d, float) and math.isinf(d) else d


def save_config(config, workdir: str) -> str:
    """Write `workdir/config.py` atomically; return its path."""
    data = _to_dict(config)
    text = pprint.pformat(_literal_infinities(data), indent=1, width=100, sort_dicts=True)
    try:
        ok = ast.literal_eval(text) == data
    except (ValueError, SyntaxError):
        ok = False
    if not ok:
        raise InputError("the config holds values that do not round-trip as Python literals (nan or "
                         "objects); it cannot be saved in the workdir")
    path = config_path(workdir)
    tmp = temp_name(workdir, CONFIG_NAME)
    with open(tmp, "w") as f:
        f.write(_HEADER + text + _FOOTER)
    os.replace(tmp, path)
    return path


def load_saved_config(workdir: str):
    """The workdir's saved config (a ConfigDict on top of the current defaults), or None."""
    path = config_path(workdir)
    if not os.path.isfile(path):
        return None
    try:
        tree = ast.parse(open(path).read(), filename=path)
        node = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", None) == "CONFIG" for t in n.targets))
        data = ast.literal_eval(node)
    except (SyntaxError, ValueError, StopIteration, OSError) as e:
        raise InputError(f"saved config {path!r} is unreadable ({type(e).__name__}); restore it or remove it "
                         f"and pass --config with the settings this workdir was trained with") from None
    if not isinstance(data, dict):
        raise InputError(f"saved config {path!r} does not hold a dict")
    config = get_default_config()
    _overlay(config, data, "config")
    return config


def _overlay(node, data: dict, where: str) -> None:
    """Set node's fields from `data`, adding fields the defaults do not have."""
    import ml_collections
    for k, v in data.items():
        if isinstance(v, dict):
            if k not in node or not isinstance(node[k], ml_collections.ConfigDict):
                node[k] = ml_collections.ConfigDict()
            _overlay(node[k], v, f"{where}.{k}")
            continue
        try:
            node[k] = v
        except (TypeError, ValueError, KeyError):
            with node.ignore_type():
                node[k] = v


def _leaves(d: dict, prefix: str):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}.{k}")
        else:
            yield (f"{prefix}.{k}" if k else prefix), v


def frozen_differences(config, saved) -> List[str]:
    """`config.<field>: <value> (trained with <saved value>)` for every model/sde/data field that
    differs from the saved config (a field one side lacks counts as different)."""
    out = []
    for section in FROZEN:
        a = dict(_leaves(_section(config, section), f"config.{section}"))
        b = dict(_leaves(_section(saved, section), f"config.{section}"))
        for key in sorted(set(a) | set(b)):
            va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
            if _norm(va) != _norm(vb):
                out.append(f"{key}: {va!r} (trained with {vb!r})")
    return out


def _section(config, dotted: str) -> dict:
    """`config.<dotted>` as a dict ({} when absent; a single field becomes {"": value})."""
    node = config
    for k in dotted.split("."):
        if not hasattr(node, "get") or k not in node:
            return {}
        node = node[k]
    return _to_dict(node) if hasattr(node, "keys") else {"": node}


def _norm(v):
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def check_against_saved(config, saved, workdir: str) -> None:
    diffs = frozen_differences(config, saved)
    if diffs:
        raise InputError(f"workdir {workdir!r} was trained with another model/SDE/data; refused override(s): "
                         f"{'; '.join(diffs)}. Drop them (and --config: the workdir's {CONFIG_NAME} is used), "
                         f"or use a new --workdir")


def new_run_dir(workdir: str, kind: str, step: int, tag: str) -> str:
    """Create and return `workdir/<kind>/step<step:09d>-<tag>-<NNN>` with the lowest free NNN."""
    parent = os.path.join(workdir, kind)
    os.makedirs(parent, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "_.+" else "_" for c in str(tag))
    for n in range(100000):
        path = os.path.join(parent, f"step{int(step):09d}-{safe}-{n:03d}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise InputError(f"too many runs in {parent!r}")


def has_checkpoint(workdir: str) -> bool:
    return bool(list_checkpoints(os.path.join(workdir, "checkpoints")))


def resolve_config(config_file: Optional[str], overrides, workdir: str, default_file: str):
    """The config of a command: the workdir's saved config (or `config_file`, which must then
    agree with it on model/sde/data), then the command-line overrides. (config, saved or None)."""
    saved = load_saved_config(workdir) if os.path.isdir(workdir) else None
    if saved is not None and config_file is None:
        config = copy.deepcopy(saved)
    else:
        config = load_config(config_file or default_file)
    for key, val in overrides:
        apply_override(config, key, val)
    if saved is not None:
        check_against_saved(config, saved, workdir)
    return config, saved
