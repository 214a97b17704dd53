"""torchrun with 2 CPU processes (gloo): sharded sampling gives the same samples as one process;
DDP training resumes bit for bit (slow)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "configs", "toy_vp_mlp.py")
TINY = ["--config", TOY, "--config.training.num_threads=1", "--config.training.progress=False",
        "--config.data.num_train=200", "--config.data.num_test=50", "--config.model.hidden=16",
        "--config.model.num_blocks=1", "--config.training.batch_size=32", "--config.training.snapshot_freq=2"]



def torchrun(nproc, *args, timeout=300):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                        os.path.join(ROOT, "run.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout.strip().splitlines()


def test_sample_i_is_the_same_with_1_and_2_processes(tmp_path, capsys):
    wd = str(tmp_path / "toy")
    assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=2"] + TINY) == 0
    opts = ["--config.sampling.num_samples=21", "--config.sampling.steps=4", "--config.sampling.sampler=pc"]
    out = torchrun(2, "--workdir", wd, "--mode", "sample", "--config.sampling.batch_size=4", *opts)
    two = out[-1]
    assert two.endswith("samples.npz") and sum(line.endswith(".npz") for line in out) == 1   # rank 0 writes
    assert run.main(["--workdir", wd, "--mode", "sample", "--config.sampling.batch_size=4"] + opts) == 0
    one = capsys.readouterr().out.strip().splitlines()[-1]
    a, b = np.load(one)["samples"], np.load(two)["samples"]
    assert a.shape == (21, 2) and np.array_equal(a, b)
    import json
    info = json.load(open(os.path.join(os.path.dirname(two), "sample.json")))
    assert info["world_size"] == 2 and info["batches"] == 3      # rank 0: rows 0-3, 8-11, 16-19; rank 1: 4-7, 12-15, 20


def _weights(path):
    ck = torch.load(path, weights_only=True)
    return ck, [v for v in ck["model"].values()] + [v for v in ck["ema"]["model"].values()]


@pytest.mark.slow
def test_ddp_training_resumes_bit_for_bit_and_shards_data(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    torchrun(2, "--workdir", a, "--mode", "train", "--config.training.n_iters=4", *TINY)
    torchrun(2, "--workdir", b, "--mode", "train", "--config.training.n_iters=2", *TINY)
    torchrun(2, "--workdir", b, "--mode", "train", "--config.training.n_iters=4", *TINY)
    ck_a, wa = _weights(os.path.join(a, "checkpoints", "checkpoint_000000004.pt"))
    ck_b, wb = _weights(os.path.join(b, "checkpoints", "checkpoint_000000004.pt"))
    assert all(torch.equal(x, y) for x, y in zip(wa, wb))
    assert ck_a["world_size"] == 2 and len(ck_a["noise_generator"]) == 2
    assert not torch.equal(ck_a["noise_generator"][0], ck_a["noise_generator"][1])     # per-rank noise
    q0, q1 = ck_a["sampler"][0]["queue"], ck_a["sampler"][1]["queue"]
    assert not set(q0.tolist()) & set(q1.tolist())                                      # disjoint shards
    # one process resumes the 2-process run (data and noise streams restart from seed and step)
    c = run.main(["--workdir", b, "--mode", "train", "--config.training.n_iters=6"])
    assert c == 0 and os.path.exists(os.path.join(b, "checkpoints", "checkpoint_000000006.pt"))
