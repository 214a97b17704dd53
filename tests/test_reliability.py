"""Failure classes of a run directory: concurrent processes, killed writers, malformed
checkpoints, divergence, non-finite samples, bad config values, leftovers of failed commands."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import run
from training.checkpoint import load_checkpoint
from training.workdir import WorkdirLock, clean_stale_temp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "configs", "toy_vp_mlp.py")
TINY = ["--config", TOY, "--config.training.num_threads=1", "--config.training.progress=False",
        "--config.data.num_train=200", "--config.data.num_test=50", "--config.model.hidden=16",
        "--config.model.num_blocks=1", "--config.training.n_iters=2", "--config.training.batch_size=32",
        "--config.sampling.num_samples=20", "--config.sampling.steps=3"]
ENV = {**os.environ, "PYTHONPATH": ROOT}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("rel") / "toy")
    assert run.main(["--workdir", wd, "--mode", "train"] + TINY) == 0
    return wd


def copy_of(trained, tmp_path):
    wd = str(tmp_path / "copy")
    shutil.copytree(trained, wd)
    return wd


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


# ---- the workdir lock --------------------------------------------------------------------------

def test_second_process_is_refused_naming_workdir_and_pid(trained, tmp_path, capsys):
    wd = copy_of(trained, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from training.workdir import lock_workdir; "
                               "lock_workdir(sys.argv[1]); print('locked', flush=True); time.sleep(60)", wd],
                              env=ENV, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = open(os.path.join(wd, "metrics.jsonl")).read()
        assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=4"]) == 2
        one_error_line(capsys, f"workdir {os.path.abspath(wd)!r} is in use by pid {holder.pid}")
        assert open(os.path.join(wd, "metrics.jsonl")).read() == before     # nothing interleaved
    finally:
        holder.kill()
        holder.wait()
    # the holder died (kill -9): its lock is stale and taken over
    assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=4"]) == 0


def test_stale_lock_file_of_dead_pid_is_taken_over(tmp_path):
    wd = str(tmp_path)
    with open(os.path.join(wd, ".lock"), "w") as f:
        f.write(f"{dead_pid()} somehost\n")
    with WorkdirLock(wd) as lock:
        assert open(lock.path).read().split()[0] == str(os.getpid())
        with WorkdirLock(wd):        # re-entrant in one process
            pass
        assert lock.fd is not None
    assert open(os.path.join(wd, ".lock")).read() == ""


# ---- killed writers ------------------------------------------------------------------------------

def test_stale_temp_files_are_cleaned_on_start(trained, tmp_path):
    wd = copy_of(trained, tmp_path)
    ck = os.path.join(wd, "checkpoints")
    stale = [os.path.join(ck, ".tmp-checkpoint_abc.pt"), os.path.join(ck, f".tmp-{dead_pid()}-checkpoint_x.pt")]
    os.makedirs(os.path.join(wd, "samples", "old"))
    stale.append(os.path.join(wd, "samples", "old", f".tmp-{dead_pid()}-samples.npy"))
    from training.workdir import _host
    stale.append(os.path.join(wd, "samples", "old", f".tmp-{dead_pid()}@{_host()}-samples.npy"))
    live = os.path.join(wd, "samples", "old", f".tmp-{os.getppid()}-samples.npy")   # a live writer's file
    remote = os.path.join(wd, f".tmp-{dead_pid()}@another_host-config.py")  # a pid of another machine
    for p in stale + [live, remote]:
        open(p, "wb").write(b"x" * 10)
    assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=3"]) == 0
    assert not any(os.path.exists(p) for p in stale) and os.path.exists(live) and os.path.exists(remote)
    assert sorted(clean_stale_temp(wd, all_pids=True)) == sorted([live, remote])


@pytest.mark.slow
def test_kill_9_during_checkpoint_write_leaves_no_temp(trained, tmp_path):
    """A real kill -9 while torch.save writes: on the next start the temp file is removed and training resumes."""
    wd = copy_of(trained, tmp_path)
    code = ("import os, signal, sys, torch\n"
            "import training.checkpoint as c\n"
            "real = torch.save\n"
            "def save(obj, f, *a, **k):\n"
            "    f.write(b'partial'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            "torch.save = save\n"
            "import run\n"
            "run.main(sys.argv[1:])\n")
    p = subprocess.run([sys.executable, "-c", code, "--workdir", wd, "--mode", "train",
                        "--config.training.n_iters=3"], env=ENV, cwd=ROOT, capture_output=True, timeout=300)
    assert p.returncode == -9
    ck = os.path.join(wd, "checkpoints")
    assert any(f.startswith(".tmp-") for f in os.listdir(ck))
    assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=3"]) == 0
    assert sorted(os.listdir(ck)) == ["checkpoint_000000002.pt", "checkpoint_000000003.pt"]


# ---- malformed checkpoints -------------------------------------------------------------------------

class NotAllowed:
    pass


def _valid(trained):
    return load_checkpoint(os.path.join(trained, "checkpoints", "checkpoint_000000002.pt"))


MALFORMED = {
    "random bytes": (lambda t, p: open(p, "wb").write(os.urandom(300)), "not a readable torch checkpoint"),
    "empty file": (lambda t, p: open(p, "wb").close(), "is empty"),
    "truncated": (lambda t, p: open(p, "wb").write(open(os.path.join(t, "checkpoints", "checkpoint_000000002.pt"),
                                                         "rb").read()[:2000]), "not a readable torch checkpoint"),
    "bare tensor": (lambda t, p: torch.save(torch.zeros(3), p), "holds a Tensor, expected a dict"),
    "list": (lambda t, p: torch.save([1, 2], p), "holds a list, expected a dict"),
    "missing ema": (lambda t, p: torch.save({k: v for k, v in _valid(t).items() if k != "ema"}, p),
                    "lacks key(s) ['ema']"),
    "step not int": (lambda t, p: torch.save({**_valid(t), "step": "abc"}, p), "'step' must be an int"),
    "model not dict": (lambda t, p: torch.save({**_valid(t), "model": torch.zeros(2)}, p),
                       "'model' must be a state dict"),
    "python object": (lambda t, p: torch.save({**_valid(t), "extra": NotAllowed()}, p), "weights_only=True"),
    "nan weights": (lambda t, p: torch.save(_nan(_valid(t)), p), "non-finite weights"),
    "other model": (lambda t, p: torch.save(_shrunk(_valid(t)), p), "does not fit the model"),
    "a directory": (lambda t, p: os.mkdir(p), "is not a file"),
}


def _nan(state):
    for sd in (state["model"], state["ema"]["model"]):
        for v in sd.values():
            if v.is_floating_point():
                v.fill_(float("nan"))
    return state


def _shrunk(state):
    for sd in (state["model"], state["ema"]["model"]):
        for k in list(sd):
            if sd[k].dim() >= 1 and sd[k].shape[0] == 16:
                sd[k] = sd[k][:8].clone()
    return state


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_checkpoint_gives_one_error_line(trained, tmp_path, capsys, case):
    wd = copy_of(trained, tmp_path)
    bad = os.path.join(wd, "checkpoints", "checkpoint_000000009.pt")
    make, message = MALFORMED[case]
    make(trained, bad)
    for mode in ("sample", "train"):
        extra = ["--config.training.n_iters=12"] if mode == "train" else []
        assert run.main(["--workdir", wd, "--mode", mode] + extra) == 2
        one_error_line(capsys, "checkpoint_000000009.pt", message)
    assert not os.path.exists(os.path.join(wd, "samples"))


# ---- divergence ---------------------------------------------------------------------------------

def test_divergence_names_a_checkpoint_with_finite_weights_and_loss(trained, tmp_path, capsys):
    wd = copy_of(trained, tmp_path)
    # lr 1e36 without clipping: the weights blow up within a step or two; a checkpoint every step
    code = run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=20", "--config.training.lr=1e36",
                     "--config.training.grad_clip=0.0", "--config.training.warmup=0",
                     "--config.training.snapshot_freq=1", "--config.training.keep=1"])
    assert code == 1
    err = one_error_line(capsys, "Last good checkpoint")
    named = err.split("Last good checkpoint (finite weights and loss): ")[1].split(".pt")[0] + ".pt"
    assert os.path.exists(named)        # kept despite keep=1
    from runner.common import restored_score_fn
    from runner.rundir import load_saved_config
    from training.data import get_dataset
    from training.losses import get_loss_fn
    config = load_saved_config(wd)
    sde, model, score_fn, step, _ = restored_score_fn(config, wd, use_ema=False,
                                                      checkpoint=int(named[-12:-3]))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    loss = get_loss_fn(sde)(score_fn, get_dataset(config).train[:64], torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


# ---- non-finite samples and batching ------------------------------------------------------------

def test_nonfinite_samples_exit_1_and_write_nothing(trained, tmp_path, capsys, monkeypatch):
    wd = copy_of(trained, tmp_path)
    assert run.main(["--workdir", wd, "--mode", "sample"]) == 0
    good_path = capsys.readouterr().out.strip().splitlines()[-1]
    good = open(good_path, "rb").read()
    import models
    real = models.get_score_fn

    def broken(sde, model, train=False):
        f = real(sde, model, train)
        return lambda x, t: f(x, t) * torch.where(torch.arange(x.shape[0]) == 3, float("nan"), 1.0)[:, None]
    monkeypatch.setattr(models, "get_score_fn", broken)
    assert run.main(["--workdir", wd, "--mode", "sample", "--config.sampling.sampler=ddim",
                     "--config.sampling.batch_size=8"]) == 1
    out = capsys.readouterr()
    assert "samples.npz" not in out.out
    assert out.err.startswith("error: sampler 'ddim' with options {'steps': 3}") and "1 non-finite of 8" in out.err
    assert os.listdir(os.path.join(wd, "samples")) == [os.path.basename(os.path.dirname(good_path))]
    assert open(good_path, "rb").read() == good


def test_samples_do_not_depend_on_batch_size(trained, tmp_path, capsys):
    wd = copy_of(trained, tmp_path)
    paths = []
    for b in (20, 7, 1):
        assert run.main(["--workdir", wd, "--mode", "sample", f"--config.sampling.batch_size={b}"]) == 0
        paths.append(capsys.readouterr().out.strip().splitlines()[-1])
    x = [np.load(p)["samples"] for p in paths]
    # per-sample seeds: the same noise in any batch (the network's batched float sums may differ in the last bits)
    assert x[0].shape == (20, 2)
    np.testing.assert_allclose(x[1], x[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x[2], x[0], rtol=1e-5, atol=1e-6)
    import json
    assert json.load(open(os.path.join(os.path.dirname(paths[1]), "sample.json")))["batches"] == 3
    assert not [f for d, _, fs in os.walk(wd) for f in fs if f.startswith(".tmp-")]


# ---- config values: validated before any work or directory --------------------------------------

@pytest.mark.parametrize("override,message", [
    ("--config.device=gpu", "config.device must be"),
    ("--config.device=cuda:x", "config.device must be"),
    ("--config.training.precision=fp8", "training.precision must be one of"),
    ("--config.sampling.batch_size=0", "config.sampling.batch_size must be an int >= 1"),
    ("--config.sampling.steps=0", "config.sampling.steps must be"),
    ("--config.training.eval_freq=-1", "training.eval_freq must be"),
    ("--config.training.batch_size=0", "training.batch_size must be"),
    ("--config.training.lr=-1.0", "training.lr must be"),
    ("--config.training.ema_decay=1.0", "config.training.ema_decay must be a finite number in [0.0, 1.0), got 1.0"),
    ("--config.training.snapshot_freq=0", "training.snapshot_freq must be"),
    ("--config.training.keep=0", "training.keep must be"),
    ("--config.seed=-1", "config.seed must be"),
    ("--config.sampling.seed=-4", "config.sampling.seed must be"),
    ("--config.model.hidden=0", "hidden=0"),
    ("--config.training.channels_last=3", "bad value"),
])
def test_bad_values_fail_before_any_directory(tmp_path, capsys, override, message):
    wd = tmp_path / "new"
    for mode in ("train", "sample"):
        assert run.main(["--workdir", str(wd), "--mode", mode] + TINY + [override]) == 2
        one_error_line(capsys, message)
        assert not wd.exists()


def test_workdir_below_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert run.main(["--workdir", str(f / "sub" / "run"), "--mode", "train"] + TINY) == 2
    one_error_line(capsys, "is a file, not a directory")


@pytest.mark.parametrize("argv", [
    ["--mode", "sample"],                                         # no checkpoint
    ["--mode", "train", "--config.data.dataset=array", "--config.data.path=/nonexistent.npy"],   # bad data
])
def test_failing_command_leaves_no_workdir(tmp_path, capsys, argv):
    wd = tmp_path / "new"
    assert run.main(["--workdir", str(wd)] + TINY + argv) == 2
    one_error_line(capsys)
    assert not wd.exists()


def test_diverging_first_run_leaves_no_workdir(tmp_path, capsys):
    wd = tmp_path / "new"
    assert run.main(["--workdir", str(wd), "--mode", "train"] + TINY + [
        "--config.training.lr=1e36", "--config.training.grad_clip=0.0", "--config.training.warmup=0",
        "--config.training.n_iters=30", "--config.training.snapshot_freq=100"]) == 1
    one_error_line(capsys, "none written yet")
    assert not wd.exists()
