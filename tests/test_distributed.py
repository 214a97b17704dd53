"""torchrun with 2 CPU processes (gloo): sharded sampling, likelihood eval and the sampler study
give the same results as one process; DDP training resumes bit for bit (slow)."""
import glob
import json
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


@pytest.fixture(scope="module")
def toy_workdir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("dist") / "toy")
    assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=2"] + TINY) == 0
    return wd


def _runs(wd, kind, name):
    return sorted(glob.glob(os.path.join(wd, kind, "*", name)))


EVAL = ["--config.eval.num_samples=21", "--config.eval.batch_size=4", "--config.eval.repeats=2",
        "--config.eval.estimator=both", "--config.eval.trace=hutchinson", "--config.eval.elbo_n_t=4",
        "--config.eval.rtol=1e-3", "--config.eval.atol=1e-3"]


def _eval_numbers(ev):
    keys = ("bits_per_dim", "stderr", "stderr_images", "stderr_estimator", "nfe", "nfe_per_example")
    return ({r: {k: ev[r][k] for k in keys} for r in ("ode", "elbo")}, ev["baselines"], ev["baselines_stderr"],
            ev["num_examples"], ev["nfe"])


def test_eval_numbers_are_the_same_with_1_and_2_processes(toy_workdir):
    """21 examples in batches of 4 (6 batches, dealt 3 and 3; the last one short), two repeats of
    fresh Hutchinson probes and ELBO times per batch: every number of eval.json agrees exactly."""
    torchrun(2, "--workdir", toy_workdir, "--mode", "eval", *EVAL)
    assert run.main(["--workdir", toy_workdir, "--mode", "eval"] + EVAL) == 0
    two, one = (json.load(open(p)) for p in _runs(toy_workdir, "eval", "eval.json")[-2:])
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["stderr_estimator"] > 0            # the probes and times are random: the repeats differ
    assert _eval_numbers(one) == _eval_numbers(two)


def test_compare_rows_are_the_same_with_1_and_2_processes(toy_workdir, tmp_path):
    """A tiny study (2 reference rows and 2 sampler cells per seed, 2 seeds: 6 cells in 3 rounds of
    2 ranks): rank 0 writes one log whose rows equal a one-process study's, grids included."""
    opts = ["--config.compare.samplers=euler_maruyama", "--config.compare.nfe=(5,)",
            "--config.compare.seeds=(0, 1)", "--config.compare.num_samples=50", "--config.compare.progress=False"]
    torchrun(2, "--workdir", toy_workdir, "--mode", "compare", *opts)
    study = os.path.dirname(_runs(toy_workdir, "compare", "compare.json")[0])
    two = [json.loads(line) for line in open(os.path.join(study, "compare_cells.jsonl"))]
    grids = sorted(os.listdir(os.path.join(study, "compare_grids")))
    import shutil
    shutil.move(os.path.join(toy_workdir, "compare"), str(tmp_path / "two"))
    assert run.main(["--workdir", toy_workdir, "--mode", "compare"] + opts) == 0
    one = [json.loads(line) for line in open(os.path.join(study, "compare_cells.jsonl"))]
    assert len(two) == len(one) == 6 and {r["sampler"] for r in one} == {"floor", "gaussian", "euler_maruyama"}
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in two] == \
        [{k: v for k, v in r.items() if k not in drop} for r in one]
    assert sorted(os.listdir(os.path.join(study, "compare_grids"))) == grids and len(grids) >= 3


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


@pytest.mark.slow
def test_digits_eval_and_compare_are_the_same_with_1_and_2_processes(tmp_path):
    """Discrete images: per-batch dequantisation noise, the per-pixel baseline, and a study whose
    feature classifier rank 0 trains and caches while rank 1 waits and then loads it."""
    wd, feat = str(tmp_path / "digits"), str(tmp_path / "feat")
    base = ["--workdir", wd, "--config.training.num_threads=1", "--config.training.progress=False",
            "--config.model.nf=8"]
    assert run.main(base + ["--mode", "train", "--config.training.n_iters=2"]) == 0
    ev = ["--mode", "eval", "--config.eval.num_samples=10", "--config.eval.batch_size=3", "--config.eval.repeats=2",
          "--config.eval.elbo_n_t=4", "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2"]
    torchrun(2, *base[:2], *ev, timeout=900)
    assert run.main(base + ev) == 0
    two, one = (json.load(open(p)) for p in _runs(wd, "eval", "eval.json")[-2:])
    assert one["convention"]["num_levels"] == 17 and set(one["baselines"]) == {"per_pixel", "gaussian"}
    assert _eval_numbers(one) == _eval_numbers(two)
    cmp = ["--mode", "compare", "--config.compare.samplers=('ddim',)", "--config.compare.nfe=(5,)",
           "--config.compare.seeds=(0, 1)", "--config.compare.num_samples=40", "--config.compare.feature_epochs=2",
           f"--config.compare.feature_cache={feat}", "--config.compare.progress=False"]
    out = torchrun(2, *base[:2], *cmp, timeout=900)
    assert sum("training the feature classifier" in line for line in out) == 1        # once, by rank 0
    study = os.path.dirname(_runs(wd, "compare", "compare.json")[0])
    two = [json.loads(line) for line in open(os.path.join(study, "compare_cells.jsonl"))]
    grids = {f: open(os.path.join(study, "compare_grids", f), "rb").read()
             for f in os.listdir(os.path.join(study, "compare_grids"))}
    import shutil
    shutil.move(os.path.join(wd, "compare"), str(tmp_path / "two"))
    assert run.main(base + cmp) == 0
    one = [json.loads(line) for line in open(os.path.join(study, "compare_cells.jsonl"))]
    assert len(one) == 6 and [{k: v for k, v in r.items() if k != "seconds"} for r in two] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in one]
    from PIL import Image
    import io
    for f, png in grids.items():           # image grids: pixel for pixel
        again = open(os.path.join(study, "compare_grids", f), "rb").read()
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(Image.open(io.BytesIO(again))))


def test_threads_are_capped_at_the_cpu_share_under_torchrun(monkeypatch):
    from training.distributed import thread_share
    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert thread_share(cpus + 3) == (cpus + 3, "")              # one process: the user's choice stands
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cpus))
    threads, note = thread_share(2)
    assert threads == 1 and "lowered to 1 per process" in note and f"{2 * cpus} processes" in note
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert thread_share(1) == (1, "")


def test_auto_threads_take_the_idle_cpus(monkeypatch):
    """num_threads=-1: idle CPUs from two /proc/stat readings (idle+iowait over all jiffies, times the
    CPU count), rounded, kept within [1, cpus]; beside one busy core of two it gives 1 thread."""
    import training.distributed as d
    import training.threads as th
    readings = iter([(100, 400, 2), (150, 500, 2)])      # 50 idle of 100 jiffies on 2 CPUs: 1.0 idle
    monkeypatch.setattr(th, "_cpu_times", lambda: next(readings))
    monkeypatch.setattr(th.time, "sleep", lambda s: None)
    assert th.idle_cpus() == pytest.approx(1.0)
    assert [th.auto_threads(2, v) for v in (0.0, 0.4, 1.0, 1.4, 1.6, 2.0, 7.0)] == [1, 1, 1, 1, 2, 2, 2]
    assert th.auto_threads(4, None) == 4                 # no /proc/stat: every CPU, as torch would
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setattr(d, "idle_cpus", lambda window=0.2: 0.3)
    threads, note = d.thread_share(-1)
    assert threads == 1 and (note == "" if cpus == 1 else "0.3 of" in note and "auto" in note)
    monkeypatch.setattr(d, "idle_cpus", lambda window=0.2: float(cpus))
    assert d.thread_share(-1) == (cpus, "")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")                 # under torchrun: each rank its share
    assert d.thread_share(-1) == (max(1, cpus // 2), "")


def test_cpu_times_reads_this_machines_proc_stat():
    import training.threads as d
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat on this system (auto threads use every CPU there)")
    idle, total, ncpu = d._cpu_times()
    assert 0 <= idle <= total and ncpu >= 1
    assert 0.0 <= d.idle_cpus(0.05) <= ncpu + 1e-9


def test_thread_governor_gives_other_processes_their_cpus(monkeypatch):
    """Between two looks 10 s apart on 4 CPUs: 3 CPUs busy in all, 1 of them this process's own:
    other processes used 2 CPUs, so 2 threads remain; when they leave, all 4 come back."""
    import training.threads as th
    looks = iter([(0.0, 0.0, (0, 0, 4)), (10.0, 10.0, (10, 40, 4)),          # 1 of 4 CPUs idle; own 1 CPU
                  (20.0, 50.0, (10, 80, 4))])                                # 4 busy, all of them own
    monkeypatch.setattr(th.ThreadGovernor, "_look", staticmethod(lambda: next(looks)))
    monkeypatch.setattr(th.time, "monotonic", lambda: 1e9)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        gov = th.ThreadGovernor(cpus=4, every=5.0)
        note = gov.tick()
        assert torch.get_num_threads() == 2 and "2.0 CPUs" in note and "4 -> 2" in note
        assert gov.tick() is not None and torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)
