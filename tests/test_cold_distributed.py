"""Cold diffusion under torchrun (2 CPU processes, gloo, 1 thread each): sampling deals batches over
ranks and gives sample i exactly as one process does (prior draw from seed i, the prior fitted alike
on every rank); restoration training resumes bit for bit and shards the data (slow)."""
import json
import os

import numpy as np
import pytest
import torch

import run
from tests.test_cold_cli import TINY
from tests.test_distributed import _weights, torchrun


def _latest_samples(wd):
    runs = sorted(os.listdir(os.path.join(wd, "samples")))
    return os.path.join(wd, "samples", runs[-1])


@pytest.mark.slow
def test_cold_sample_i_is_the_same_with_1_and_2_processes(tmp_path, capsys):
    wd = str(tmp_path / "blur")
    base = ["--workdir", wd, "--config.cold.degradation=blur", "--config.cold.prior_components=2"] + TINY
    assert run.main(base + ["--mode", "train", "--config.training.n_iters=2"]) == 0
    opts = ["--mode", "sample", "--config.sampling.sampler=cold", "--config.sampling.num_samples=7",
            "--config.sampling.batch_size=2", "--config.cold.prior_noise=0.05"]
    torchrun(2, "--workdir", wd, *opts)
    two = _latest_samples(wd)
    assert run.main(["--workdir", wd] + opts) == 0
    one = _latest_samples(wd)
    assert one != two
    a, b = (np.load(os.path.join(d, "samples.npz"))["samples"] for d in (one, two))
    assert a.shape == (7, 1, 8, 8) and np.array_equal(a, b)
    assert len({a[i].tobytes() for i in range(7)}) == 7           # per-sample seeds: all differ
    info = json.load(open(os.path.join(two, "sample.json")))
    assert info["world_size"] == 2 and info["batches"] == 2 and info["sampler"] == "cold"


@pytest.mark.slow
def test_cold_ddp_training_resumes_bit_for_bit_and_shards_data(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    args = ["--config.cold.degradation=snow"] + TINY
    torchrun(2, "--workdir", a, "--mode", "train", "--config.training.n_iters=4", *args)
    torchrun(2, "--workdir", b, "--mode", "train", "--config.training.n_iters=2", *args)
    torchrun(2, "--workdir", b, "--mode", "train", "--config.training.n_iters=4", *args)
    ck_a, wa = _weights(os.path.join(a, "checkpoints", "checkpoint_000000004.pt"))
    ck_b, wb = _weights(os.path.join(b, "checkpoints", "checkpoint_000000004.pt"))
    assert all(torch.equal(x, y) for x, y in zip(wa, wb))
    assert ck_a["world_size"] == 2
    assert not torch.equal(ck_a["noise_generator"][0], ck_a["noise_generator"][1])     # per-rank t draws
    q0, q1 = ck_a["sampler"][0]["queue"], ck_a["sampler"][1]["queue"]
    assert not set(q0.tolist()) & set(q1.tolist())                                      # disjoint shards
    # one process trained straight differs (other batch split and draws) but is a cold run of the same net
    c = str(tmp_path / "c")
    assert run.main(["--workdir", c, "--mode", "train", "--config.training.n_iters=4"] + args) == 0
    _, wc = _weights(os.path.join(c, "checkpoints", "checkpoint_000000004.pt"))
    assert [x.shape for x in wc] == [x.shape for x in wa] and not all(torch.equal(x, y) for x, y in zip(wa, wc))
