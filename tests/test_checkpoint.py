"""Atomic checkpoint writes: a crash mid-write keeps the previous checkpoint intact."""
import os

import pytest
import torch

from training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint


def test_save_load_keep(tmp_path):
    d = str(tmp_path)
    for step in (1, 2, 3, 4):
        save_checkpoint(d, {"step": step, "w": torch.full((3,), float(step))}, step, keep=2)
    assert [os.path.basename(p) for p in list_checkpoints(d)] == ["checkpoint_000000003.pt",
                                                                    "checkpoint_000000004.pt"]
    state = load_checkpoint(latest_checkpoint(d))
    assert state["step"] == 4 and torch.equal(state["w"], torch.full((3,), 4.0))
    assert sorted(os.listdir(d)) == ["checkpoint_000000003.pt", "checkpoint_000000004.pt"]  # no temp files


def test_crash_mid_write_keeps_previous(tmp_path, monkeypatch):
    d = str(tmp_path)
    save_checkpoint(d, {"step": 1}, 1)
    before = open(latest_checkpoint(d), "rb").read()
    real_save = torch.save

    def crashing_save(obj, f, *a, **k):
        f.write(b"partial bytes of a checkpoint")   # some bytes reach the temp file ...
        raise KeyboardInterrupt("killed mid-write")   # ... then the process is interrupted

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(d, {"step": 2}, 2)
    monkeypatch.setattr(torch, "save", real_save)
    assert os.listdir(d) == ["checkpoint_000000001.pt"]          # no truncated step-2 file, no temp
    assert open(latest_checkpoint(d), "rb").read() == before
    assert load_checkpoint(latest_checkpoint(d))["step"] == 1


def test_unreadable_checkpoint_is_named(tmp_path):
    p = tmp_path / "checkpoint_000000005.pt"
    p.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="checkpoint_000000005.pt"):
        load_checkpoint(str(p))
