"""Atomic checkpoints: write to a temporary file in the same directory, fsync, os.replace.

A crash at any moment leaves either the previous set of checkpoints or the new one,
never a truncated `checkpoint_<step>.pt` (os.replace is atomic within a filesystem).
Files are `checkpoint_<step:09d>.pt`; the newest `keep` are kept.
"""
from __future__ import annotations

import os
import re
import tempfile
from typing import List, Optional

import torch

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


def save_checkpoint(ckpt_dir: str, state: dict, step: int, keep: int = 3) -> str:
    """Write `state` atomically as the checkpoint of `step`; delete all but the newest `keep`."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    os.makedirs(ckpt_dir, exist_ok=True)
    final = checkpoint_path(ckpt_dir, step)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-checkpoint_", suffix=".pt", dir=ckpt_dir)
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
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        os.remove(old)
    return final


def load_checkpoint(path: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path!r}: {e}") from None
