"""Atomic checkpoints: write to a temporary file in the same directory, fsync, os.replace.

A crash at any moment leaves either the previous set of checkpoints or the new one,
never a truncated `checkpoint_<step>.pt` (os.replace is atomic within a filesystem).
Files are `checkpoint_<step:09d>.pt`; the newest `keep` are kept (plus any `protect`ed one).
Temporary files are `.tmp-<pid>@<host>-checkpoint_*.pt` so a later start can tell a dead writer's
leftovers (`training.workdir.clean_stale_temp`).

`load_checkpoint` reads with `weights_only=True` (tensors and plain containers only) and
checks the structure the training loop writes, so a malformed file gives one ValueError
naming the file and what is wrong instead of a KeyError/IndexError deep in the caller.
"""
from __future__ import annotations

import os
import re
import tempfile
from typing import List, Optional

import torch

from .workdir import temp_prefix
from configs.errors import InputError

_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")


def checkpoint_path(ckpt_dir: str, step: int) -> str:
    return os.path.join(ckpt_dir, f"checkpoint_{step:09d}.pt")


def list_checkpoints(ckpt_dir: str) -> List[str]:
    """Checkpoint files of a directory, oldest step first."""
    if not os.path.isdir(ckpt_dir):
        return []
    found = []
    for f in os.listdir(ckpt_dir):
        m = _NAME.match(f)
        if m:
            found.append((int(m.group(1)), os.path.join(ckpt_dir, f)))
    return [p for _, p in sorted(found)]


def latest_checkpoint(ckpt_dir: str) -> Optional[str]:
    ckpts = list_checkpoints(ckpt_dir)
    return ckpts[-1] if ckpts else None


def resume_hint(ckpt_dir: str, bad: str) -> str:
    """What to do when the checkpoint training would resume from is unreadable: resume from the one before."""
    step = checkpoint_step(bad)
    earlier = [checkpoint_step(p) for p in list_checkpoints(ckpt_dir) if checkpoint_step(p) < step]
    if not earlier:
        return f"no earlier checkpoint exists; move {bad!r} away to train from scratch"
    return (f"to resume from the previous checkpoint (step {earlier[-1]}), run the same command with "
            f"--checkpoint {earlier[-1]}; the unreadable file is then kept as {os.path.basename(bad)}.corrupt")


def set_aside_later(ckpt_dir: str, step: int, required: Optional[dict] = None) -> List[str]:
    """Before resuming from `step` instead of the latest: every later checkpoint must be unreadable
    (else resuming would overwrite it: InputError naming it); each is renamed to `<name>.corrupt`
    (kept, never deleted). Returns the new names."""
    later = [p for p in list_checkpoints(ckpt_dir) if checkpoint_step(p) > step]
    for p in later:
        try:
            load_checkpoint(p, required)
        except InputError:
            continue
        raise InputError(f"--checkpoint {step}: the later checkpoint {p!r} is readable, and resuming from an "
                         f"earlier step would overwrite it; resume from the latest (omit --checkpoint) or move "
                         f"the later checkpoints out of {ckpt_dir!r} first")
    moved = []
    for p in later:
        os.replace(p, p + ".corrupt")
        moved.append(p + ".corrupt")
    return moved


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(ckpt_dir: str, state: dict, step: int, keep: int = 3, protect: Optional[str] = None) -> str:
    """Write `state` atomically as the checkpoint of `step`; delete all but the newest `keep`
    (never `protect`, e.g. the last checkpoint known to be good)."""
    if keep < 1:
        raise InputError(f"keep must be >= 1, got {keep}")
    os.makedirs(ckpt_dir, exist_ok=True)
    final = checkpoint_path(ckpt_dir, step)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix() + "checkpoint_", suffix=".pt", dir=ckpt_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(ckpt_dir)
    keep_abs = os.path.abspath(protect) if protect else None
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        if os.path.abspath(old) == keep_abs:
            continue
        try:
            os.remove(old)
        except FileNotFoundError:     # removed by someone else meanwhile: the goal is reached
            pass
    return final


def checkpoint_step(path: str) -> Optional[int]:
    m = _NAME.match(os.path.basename(path))
    return int(m.group(1)) if m else None


def find_checkpoint(ckpt_dir: str, step: Optional[int] = None) -> str:
    """The checkpoint of `step` (None: the latest) in `ckpt_dir`; ValueError listing what exists."""
    ckpts = list_checkpoints(ckpt_dir)
    if not ckpts:
        raise InputError(f"no checkpoint in {ckpt_dir!r}; run --mode train first")
    if step is None:
        return ckpts[-1]
    for p in ckpts:
        if checkpoint_step(p) == step:
            return p
    raise InputError(f"no checkpoint of step {step} in {ckpt_dir!r}; available steps: "
                     f"{[checkpoint_step(p) for p in ckpts]}")


# What the training loop writes: key -> (type, description)
TRAIN_KEYS = {"step": (int, "an int"), "model": (dict, "a state dict"), "ema": (dict, "a dict"),
              "optimizer": (dict, "a dict"), "sampler": ((dict, list), "a dict or list"),
              "noise_generator": (object, "a generator state")}
WEIGHT_KEYS = {"step": (int, "an int"), "model": (dict, "a state dict"), "ema": (dict, "a dict")}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def check_file(path: str, empty: str = "an interrupted copy?") -> None:
    """InputError unless `path` is an existing, non-empty file."""
    if not os.path.exists(path):
        raise InputError(f"checkpoint {path!r} does not exist")
    if not os.path.isfile(path):
        raise InputError(f"checkpoint {path!r} is not a file")
    if os.path.getsize(path) == 0:
        raise InputError(f"checkpoint {path!r} is empty (0 bytes; {empty})")


def load_checkpoint(path: str, required: Optional[dict] = None) -> dict:
    """Read a checkpoint with weights_only=True and check it holds the `required` keys
    ({key: (type, description)}; default: none). ValueError naming the file and the problem."""
    check_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"      # torch.save writes a zip archive
        if is_zip and "Unsupported global" in str(e):
            why = ("holds Python objects other than tensors and plain containers, refused by "
                   "torch.load(weights_only=True) (not a checkpoint written by scoresde?)")
        elif not is_zip:
            why = "is not a readable torch checkpoint (not a zip archive written by torch.save)"
        else:
            why = f"is not a readable torch checkpoint (truncated or corrupted: {_first_line(e)})"
        raise InputError(f"checkpoint {path!r} {why}") from None
    if required:
        if not isinstance(state, dict):
            raise InputError(f"checkpoint {path!r} holds a {type(state).__name__}, expected a dict with keys "
                             f"{sorted(required)}")
        missing = [k for k in required if k not in state]
        if missing:
            raise InputError(f"checkpoint {path!r} lacks key(s) {missing} (has {sorted(map(str, state))})")
        for k, (typ, desc) in required.items():
            v = state[k]
            if typ is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise InputError(f"checkpoint {path!r}: '{k}' must be {desc} >= 0, got {v!r}")
            if typ is not object and typ is not int and not isinstance(v, typ):
                raise InputError(f"checkpoint {path!r}: '{k}' must be {desc}, got a {type(v).__name__}")
        if "ema" in required and "model" not in state["ema"]:
            raise InputError(f"checkpoint {path!r}: 'ema' lacks its 'model' state dict")
    return state


def check_state_dict(path: str, where: str, sd) -> None:
    """ValueError unless `sd` maps names to tensors, all finite."""
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise InputError(f"checkpoint {path!r}: '{where}' is not a state dict of tensors")
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(f"checkpoint {path!r}: '{where}' holds non-finite weights ({bad[:3]}"
                         f"{' ...' if len(bad) > 3 else ''}); sample/eval/compare can use an earlier one with "
                         f"--checkpoint STEP; to resume training from an earlier one, move this file away")
