"""A newcomer's frictions (issue 17): a corrupt last checkpoint names what to do and the flag that
resumes from the previous one; resuming says from where."""
import os

import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "configs", "toy_vp_mlp.py")
TINY = ["--config", TOY, "--config.training.num_threads=1", "--config.training.progress=False",
        "--config.data.num_train=200", "--config.data.num_test=50", "--config.model.hidden=16",
        "--config.model.num_blocks=1", "--config.training.batch_size=32", "--config.training.snapshot_freq=2"]


def ckpt(wd, step):
    return os.path.join(wd, "checkpoints", f"checkpoint_{step:09d}.pt")


def test_corrupt_last_checkpoint_names_the_flag_and_resumes_from_the_previous(tmp_path, capsys):
    wd = str(tmp_path / "w")
    assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=4"] + TINY) == 0
    capsys.readouterr()
    data = open(ckpt(wd, 4), "rb").read()
    open(ckpt(wd, 4), "wb").write(data[: len(data) // 2])          # a truncated copy
    assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=6"] + TINY) == 2
    err = capsys.readouterr().err
    assert "checkpoint_000000004.pt" in err and "truncated" in err and "--checkpoint 2" in err, err
    assert err.count("\n") == 1 and os.path.getsize(ckpt(wd, 4)) == len(data) // 2     # one line, file untouched
    # the flag: resume from step 2; the unreadable file is kept aside, never deleted
    assert run.main(["--workdir", wd, "--mode", "train", "--checkpoint", "2", "--config.training.n_iters=6"]
                    + TINY) == 0
    out = capsys.readouterr().out
    assert f"resuming from step 2 (checkpoint {ckpt(wd, 2)})" in out, out
    assert "set aside" in out and os.path.getsize(ckpt(wd, 4) + ".corrupt") == len(data) // 2
    assert os.path.exists(ckpt(wd, 6))
    # a plain rerun resumes from the latest and says so
    assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=8"] + TINY) == 0
    assert f"resuming from step 6 (checkpoint {ckpt(wd, 6)})" in capsys.readouterr().out
