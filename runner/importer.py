"""`--mode import`: a published checkpoint -> a scoresde run directory.

    python run.py --mode import --config configs/pretrained/<name>.py --workdir W \\
        --config.pretrained.checkpoint=FILE

reads FILE in the format of `config.pretrained.format`:

- "score_sde": a score_sde_pytorch `.pth` (torch.save of {'model', 'ema', 'optimizer', 'step'}):
  the model's state dict (DataParallel's `module.` prefix dropped), the EMA's `shadow_params`
  (a positional list over the trainable parameters), the step; the optimizer state is ignored;
- "diffusers": a UNet2DModel `diffusion_pytorch_model.safetensors` (needs the `safetensors`
  package: pip install -e ".[safetensors]") or `.bin`, or the folder holding one (the
  safetensors file first). These are the EMA weights where the publisher kept one; the run's
  model and EMA both get them.

and writes W/config.py and W/checkpoints/checkpoint_<step>.pt in the layout the training loop
writes (model, EMA), after which sample, eval, compare, inpaint and guidance run unchanged, and
`runner.load_run(W)` returns the model. Files are read with torch.load(weights_only=True)
(tensors and plain containers only). Everything is read and converted before anything is
written: bad input gets one ValueError naming the file and what was expected (the run.py
`error:` line: InputError) and leaves no run directory behind.
"""
from __future__ import annotations

import os
import shutil
from typing import Dict, Tuple

import torch

import models
from configs.errors import InputError
from configs.schema import validate_pretrained
from models.convert import ConversionError, from_diffusers, from_score_sde, score_sde_ema
from training.checkpoint import check_file, save_checkpoint

from .rundir import save_config

DIFFUSERS_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def check_import_args(args) -> None:
    """--mode import needs a pretrained config and a new (or empty) workdir."""
    if args.config is None:
        raise InputError("--mode import needs --config configs/pretrained/<name>.py (a config with a "
                         "'pretrained' section naming the checkpoint format)")
    if args.checkpoint is not None:
        raise InputError("--checkpoint picks a step of an existing run; --mode import takes the file with "
                         "--config.pretrained.checkpoint=FILE")
    if os.path.isdir(args.workdir) and os.listdir(args.workdir):
        raise InputError(f"workdir {args.workdir!r} exists and is not empty; --mode import writes a new run "
                         f"directory (nothing is overwritten): use a new --workdir")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def _torch_load(path: str, expected: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        with open(path, "rb") as f:
            head = f.read(8)
        if head[:4] == b"PK\x03\x04" and "Unsupported global" in str(e):
            why = "holds Python objects besides tensors and plain containers (refused by torch.load(weights_only=True))"
        elif head[:4] == b"PK\x03\x04":
            why = f"is a truncated or corrupted torch file ({_first_line(e)})"
        else:
            why = "is not a torch file (torch.save's zip archive)"
        raise InputError(f"checkpoint {path!r} {why}; expected {expected}") from None


def _safetensors_load(path: str) -> Dict:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise InputError(f"checkpoint {path!r} is a .safetensors file, which needs the safetensors package "
                         f"(pip install -e \".[safetensors]\"), or import the .bin file instead") from None
    try:
        return load_file(path, device="cpu")
    except Exception as e:
        raise InputError(f"checkpoint {path!r} is not a readable safetensors file (truncated or corrupted: "
                         f"{_first_line(e)}); expected diffusers' diffusion_pytorch_model.safetensors") from None


def _checkpoint_file(p) -> str:
    path = p.get("checkpoint", "")
    if not path:
        raise InputError("--mode import needs the file to import: --config.pretrained.checkpoint=FILE "
                         f"(a {p.format} checkpoint; see {p.get('source', 'the config')})")
    if os.path.isdir(path) and p.format == "diffusers":
        for name in DIFFUSERS_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise InputError(f"folder {path!r} holds neither of {list(DIFFUSERS_FILES)}")
    check_file(path, "an interrupted download?")
    return path


def _read_score_sde(path: str, build) -> Tuple[Dict, Dict, int, Dict]:
    expected = "a score_sde_pytorch checkpoint (.pth): a dict with 'model', 'ema' and 'step' (and 'optimizer')"
    state = _torch_load(path, expected)
    if not isinstance(state, dict) or not {"model", "ema"} <= set(state):
        if isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values()):
            got = f"a bare state dict ({len(state)} tensors; a diffusers .bin? then use a diffusers config)"
        elif isinstance(state, dict):
            got = f"a dict with keys {sorted(map(str, state))[:8]}"
        else:
            got = f"a {type(state).__name__}"
        raise InputError(f"checkpoint {path!r} holds {got}; expected {expected}")
    ema = state["ema"]
    if not isinstance(state["model"], dict) or not isinstance(ema, dict) or "shadow_params" not in ema:
        raise InputError(f"checkpoint {path!r}: 'model' must be a state dict and 'ema' a dict with 'shadow_params' "
                         f"(score_sde's ExponentialMovingAverage.state_dict()); expected {expected}")
    step = state.get("step", 0)
    if isinstance(step, torch.Tensor):
        step = int(step)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputError(f"checkpoint {path!r}: 'step' must be an int >= 0, got {step!r}")
    model = build()                           # after the file checks: a published network is big
    try:
        weights = from_score_sde(state["model"], model)
        ema_weights = score_sde_ema(state["model"], ema["shadow_params"], model)
    except ConversionError as e:
        raise InputError(f"checkpoint {path!r} does not fit the config's network: {e}") from None
    decay = ema.get("decay", 0.9999)
    info = {"decay": float(decay) if isinstance(decay, (int, float)) else 0.9999,
            "num_updates": ema.get("num_updates", None) or 0}
    return weights, ema_weights, step, info


def _read_diffusers(path: str, build) -> Tuple[Dict, Dict, int, Dict]:
    if path.endswith(".safetensors"):
        state = _safetensors_load(path)
    else:
        state = _torch_load(path, "diffusers' diffusion_pytorch_model.bin (a UNet2DModel state dict)")
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        keys = sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__
        raise InputError(f"checkpoint {path!r} holds {keys}; expected a diffusers UNet2DModel state dict "
                         f"(name -> tensor; a score_sde .pth? then use a score_sde config)")
    model = build()
    try:
        weights = from_diffusers(state, model)
    except ConversionError as e:
        raise InputError(f"checkpoint {path!r} does not fit the config's network: {e}") from None
    return weights, weights, 0, {"decay": 0.9999, "num_updates": 0}


def read_pretrained(config):
    """(model state dict, EMA state dict, step, EMA info, file) of config.pretrained, converted and
    checked against the config's network (CPU); ValueError on anything unexpected."""
    validate_pretrained(config)
    path = _checkpoint_file(config.pretrained)
    reader = _read_score_sde if config.pretrained.format == "score_sde" else _read_diffusers
    weights, ema_weights, step, info = reader(path, lambda: models.get_model(config))
    return weights, ema_weights, step, info, path


def run_import(config, workdir: str) -> str:
    """Write the run directory `workdir` for config.pretrained.checkpoint; the checkpoint's path."""
    if os.path.isdir(workdir) and os.listdir(workdir):
        raise InputError(f"workdir {workdir!r} exists and is not empty; --mode import writes a new run directory "
                         f"(nothing is overwritten): use a new --workdir")
    if "pretrained" not in config:
        raise InputError("--mode import needs a config with a 'pretrained' section (configs/pretrained/<name>.py)")
    weights, ema_weights, step, info, path = read_pretrained(config)
    created = not os.path.isdir(workdir)
    os.makedirs(workdir, exist_ok=True)
    try:
        save_config(config, workdir)
        ckpt = save_checkpoint(os.path.join(workdir, "checkpoints"), {
            "step": step, "model": weights, "imported_from": os.path.abspath(path),
            "ema": {"decay": info["decay"], "warmup": False, "num_updates": int(info["num_updates"]),
                    "model": ema_weights}}, step)
    except BaseException:
        if created:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    print(f"imported {config.pretrained.format} checkpoint {path!r} (step {step}) into {workdir}: config.py, "
          f"{os.path.relpath(ckpt, workdir)}")
    return ckpt
