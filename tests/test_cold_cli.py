"""Cold diffusion through run.py: training a restoration net with the loop (resume, EMA,
checkpoints), sampling it with the cold sampler, and the bad-input errors."""
import json
import os

import numpy as np
import pytest
import torch

import run
from tests.test_cli import latest

TINY = ["--config.training.num_threads=1", "--config.training.progress=False", "--config.model.nf=8",
        "--config.training.batch_size=16", "--config.sampling.num_samples=6", "--config.cold.steps=4",
        "--config.training.snapshot_freq=2"]


def test_cold_train_and_sample(tmp_path):
    wd = str(tmp_path / "cold")
    args = ["--workdir", wd, "--config.cold.degradation=blur", "--config.cold.prior_components=2"] + TINY
    assert run.main(args + ["--mode", "train", "--config.training.n_iters=2"]) == 0
    ck = torch.load(os.path.join(wd, "checkpoints", "checkpoint_000000002.pt"), weights_only=True)
    assert ck["step"] == 2 and "ema" in ck
    assert run.main(args + ["--mode", "sample", "--config.sampling.sampler=cold"]) == 0
    info = json.load(open(latest(wd, "samples", "sample.json")))
    assert info["sampler"] == "cold" and info["nfe"] == 4
    assert info["options"]["algorithm"] == "improved" and info["options"]["prior"] == "gmm"
    x = np.load(latest(wd, "samples", "samples.npz"))["samples"]
    assert x.shape == (6, 1, 8, 8) and np.isfinite(x).all()


def test_full_blur_run_saves_inf_and_samples_from_mean_images(tmp_path):
    """--config.cold.options.blur.sigma_max=inf: the saved config keeps inf (written 1e999), a later mode
    reloads it, and the prior is fitted to per-image means (x_T constant per image, up to its noise)."""
    wd = str(tmp_path / "full")
    args = ["--workdir", wd, "--config.cold.degradation=blur", "--config.cold.options.blur.sigma_max=inf",
            "--config.cold.prior_components=2", "--config.cold.prior_noise=0.0"] + TINY
    assert run.main(args + ["--mode", "train", "--config.training.n_iters=1"]) == 0
    assert "1e999" in open(os.path.join(wd, "config.py")).read()
    from runner.rundir import load_saved_config
    config = load_saved_config(wd)
    assert config.cold.options.blur.sigma_max == float("inf")
    import sde_lib
    from runner.cold import fit_prior
    from training.data import get_dataset
    D = sde_lib.get_degradation(config)
    kind, prior = fit_prior(config, D, get_dataset(config).train)
    xT = prior.sample(list(range(6)), dtype=torch.float64)
    spread = (xT - xT.mean(dim=(2, 3), keepdim=True)).abs().amax().item()
    assert kind == "gmm" and D.full and spread < 0.01 < xT.mean(dim=(1, 2, 3)).std().item()
    assert run.main(["--workdir", wd, "--mode", "sample", "--config.sampling.sampler=cold"]) == 0


@pytest.mark.slow
def test_cold_resume_and_batch_invariant_samples(tmp_path):
    wd = str(tmp_path / "cold")
    args = ["--workdir", wd, "--config.cold.degradation=mask"] + TINY
    assert run.main(args + ["--mode", "train", "--config.training.n_iters=2"]) == 0
    assert run.main(args + ["--mode", "train", "--config.training.n_iters=4"]) == 0      # resumes at 2
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]
    other = str(tmp_path / "straight")
    assert run.main(["--workdir", other, "--config.cold.degradation=mask", "--mode", "train",
                     "--config.training.n_iters=4"] + TINY) == 0
    a, b = (torch.load(os.path.join(w, "checkpoints", "checkpoint_000000004.pt"), weights_only=True)
            for w in (wd, other))
    assert all(torch.equal(a["ema"]["model"][k], b["ema"]["model"][k]) for k in a["ema"]["model"])
    sample = ["--workdir", wd, "--mode", "sample", "--config.sampling.sampler=cold",
              "--config.cold.prior_noise=0.05"] + TINY
    assert run.main(sample) == 0
    info = json.load(open(latest(wd, "samples", "sample.json")))
    assert info["options"]["prior"] == "fixed"            # a full mask forgets x0: x_T is the mask
    x = np.load(latest(wd, "samples", "samples.npz"))["samples"]
    assert run.main(sample + ["--config.sampling.batch_size=2"]) == 0     # per-sample seeds
    y = np.load(latest(wd, "samples", "samples.npz"))["samples"]
    assert np.abs(x - y).max() < 1e-5 and np.abs(x[0] - x[1]).max() > 0


@pytest.mark.parametrize("argv,message", [
    (["--config.cold.degradation=fog"], "config.cold.degradation must be one of ['', 'blur', 'gaussian', 'mask', 'pixelate', 'snow'], got 'fog'"),
    (["--config.cold.degradation=blur", "--config.cold.options.blur.sigma_max=-1.0"],
     "config.cold.options.blur: blur sigma_max (the blur std sigma_blur(T), or inf: the full blur) must be a finite "
     "number in (0.0, inf), got -1.0"),
    (["--config.cold.degradation=blur", "--config.cold.options.blur.sigma_max=-inf"],
     "config.cold.options.blur: blur sigma_max (the blur std sigma_blur(T), or inf: the full blur) must be a finite "
     "number in (0.0, inf), got -inf"),
    (["--config.cold.degradation=blur", "--config.cold.options.blur.sigma_max=nan"], "got nan"),
    (["--config.cold.degradation=blur", "--config.cold.options.blur.sigma_max=full"],
     "bad value 'full' for config.cold.options.blur.sigma_max"),
    (["--config.cold.degradation=mask", "--config.cold.options.mask.fraction_max=1.5"],
     "mask fraction_max (the masked fraction at T) must be a finite number in [0.0, 1.0], got 1.5"),
    (["--config.cold.degradation=blur", "--mode", "sample"], "hot sampler 'pc' cannot sample"),
    (["--config.sampling.sampler=cold", "--mode", "sample"], "needs a cold run"),
    (["--config.cold.degradation=blur", "--mode", "eval"], "--mode eval needs a score model"),
    (["--config.cold.loss=l3"], "config.cold.loss must be one of ['l1', 'l2'], got 'l3'"),
    (["--config.cold.algorithm=fast"], "config.cold.algorithm must be one of ['improved', 'naive'], got 'fast'"),
    (["--config.cold.degradation=snow", "--config.training.sample_freq=10"], "config.training.sample_freq must be 0 with cold.degradation='snow'"),
])
def test_bad_cold_input_gives_one_error_line_before_any_work(argv, message, capsys, tmp_path):
    wd = tmp_path / "w"
    assert run.main(["--workdir", str(wd)] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not wd.exists()


def test_a_cold_run_refuses_another_degradation(tmp_path, capsys):
    wd = str(tmp_path / "c")
    assert run.main(["--workdir", wd, "--mode", "train", "--config.cold.degradation=mask",
                     "--config.training.n_iters=1"] + TINY) == 0
    capsys.readouterr()
    assert run.main(["--workdir", wd, "--mode", "sample", "--config.cold.degradation=blur",
                     "--config.sampling.sampler=cold"]) == 2
    assert "config.cold.degradation: 'blur' (trained with 'mask')" in capsys.readouterr().err
