"""run.py end to end on tiny configs, and its error messages."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "configs", "toy_vp_mlp.py")
TINY_TOY = ["--config.training.num_threads=1", "--config.training.progress=False",
            "--config.data.num_train=200", "--config.data.num_test=50",
            "--config.model.hidden=16", "--config.model.num_blocks=1",
            "--config.training.n_iters=4", "--config.training.batch_size=32",
            "--config.sampling.num_samples=64", "--config.sampling.steps=5",
            "--config.eval.num_samples=16", "--config.eval.rtol=1e-3", "--config.eval.atol=1e-3"]


def latest(wd, kind, name):
    """The newest `wd/<kind>/<run>/<name>` (each sample/eval/compare run has its own directory)."""
    import glob
    found = glob.glob(os.path.join(wd, kind, "*", name))
    assert found, f"no {kind}/*/{name} in {wd}"
    return max(found, key=os.path.getmtime)


def test_toy_train_sample_eval(tmp_path):
    wd = str(tmp_path / "toy")
    assert run.main(["--config", TOY, "--workdir", wd, "--mode", "train"] + TINY_TOY) == 0
    assert os.path.exists(os.path.join(wd, "checkpoints", "checkpoint_000000004.pt"))
    assert run.main(["--config", TOY, "--workdir", wd, "--mode", "sample"] + TINY_TOY) == 0
    info = json.load(open(latest(wd, "samples", "sample.json")))
    assert info["sampler"] == "euler_maruyama" and info["nfe"] == 5 + 1   # 5 steps + Tweedie denoising
    assert info["step"] == 4 and info["finite"]
    samples = np.load(latest(wd, "samples", "samples.npz"))["samples"]
    assert samples.shape == (64, 2)
    assert os.path.getsize(latest(wd, "samples", "samples.png")) > 1000
    # per-sampler option blocks accept new options from the command line
    assert run.main(["--config", TOY, "--workdir", wd, "--mode", "sample"] + TINY_TOY +
                    ["--config.sampling.sampler=ode", "--config.sampling.options.ode.method=euler",
                     "--config.sampling.options.ode.steps=4"]) == 0
    info = json.load(open(latest(wd, "samples", "sample.json")))
    assert info["sampler"] == "ode" and info["options"]["steps"] == 4 and info["nfe"] == 4 + 1
    assert run.main(["--config", TOY, "--workdir", wd, "--mode", "eval"] + TINY_TOY) == 0
    ev = json.load(open(latest(wd, "eval", "eval.json")))
    assert ev["num_examples"] == 16 and ev["trace"] == "exact" and np.isfinite(ev["bits_per_dim"])
    assert ev["stderr"] > 0 and "continuous" in ev["quantity"]


def test_digits_all_modes_tiny(tmp_path):
    wd = str(tmp_path / "digits")
    args = ["--workdir", wd, "--config.training.num_threads=1", "--config.training.progress=False",
            "--config.model.nf=8", "--config.training.n_iters=2", "--config.sampling.num_samples=4",
            "--config.sampling.steps=3", "--config.eval.num_samples=4", "--config.eval.rtol=1e-2",
            "--config.eval.atol=1e-2", "--config.sampling.sampler", "ddim"]
    assert run.main(args) == 0
    npz = np.load(latest(wd, "samples", "samples.npz"))
    assert npz["images_uint8"].shape == (4, 1, 8, 8) and npz["images_uint8"].dtype == np.uint8
    from PIL import Image
    assert Image.open(latest(wd, "samples", "samples.png")).size[0] >= 256
    ev = json.load(open(latest(wd, "eval", "eval.json")))
    assert "17 levels" in ev["quantity"] and ev["bits_per_dim"] > 0


@pytest.mark.parametrize("argv,message", [
    (["--config.sde.name=foo"], "unknown SDE name 'foo'"),
    (["--config.model.name=resnet"], "unknown model name 'resnet'"),
    (["--config.sampling.sampler=magic"], "unknown sampler 'magic'"),
    (["--config.training.n_iters=-3"], "config.training.n_iters must be a non-negative int, got -3"),
    (["--config.training.n_iters=abc"], "bad value 'abc' for config.training.n_iters"),
    (["--config.training.nope=1"], "unknown config field 'config.training.nope'"),
    (["--mode", "dance"], "unknown mode 'dance'"),
    (["--frobnicate"], "unrecognised argument '--frobnicate'"),
    (["--config", "/nonexistent/cfg.py"], "config file '/nonexistent/cfg.py' does not exist"),
    (["--config.data.dataset=mnist"], "unknown data set 'mnist'"),
])
def test_bad_flags_give_one_clear_error(argv, message, capsys, tmp_path):
    assert run.main(["--workdir", str(tmp_path / "w")] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_workdir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert run.main(["--workdir", str(f)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_sample_without_checkpoint(tmp_path, capsys):
    assert run.main(["--workdir", str(tmp_path), "--mode", "sample"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_subprocess_error_has_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--workdir", str(tmp_path),
                        "--config.sde.name=foo"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2
    assert p.stderr.startswith("error: unknown SDE name 'foo'") and "Traceback" not in p.stderr


def test_compare_mode_on_a_mixture_with_the_exact_score(tmp_path):
    """compare runs every sampler at every budget; on mixture data it adds the exact score, whose
    samples (discretisation error only) beat a barely trained network's by far."""
    wd = str(tmp_path / "mix")
    cfg = os.path.join(ROOT, "configs", "toy_mixture_vp_mlp.py")
    args = ["--config", cfg, "--workdir", wd] + TINY_TOY + [
        "--config.compare.samplers=('euler_maruyama', 'ode')", "--config.compare.steps=(5, 20)",
        "--config.compare.tolerances=(1e-3,)", "--config.compare.num_samples=50"]
    assert run.main(args + ["--mode", "train"]) == 0
    assert run.main(args + ["--mode", "compare"]) == 0
    report = json.load(open(latest(wd, "compare", "compare.json")))
    rows = report["results"]
    assert [(r["score"], r["sampler"]) for r in rows] == [
        ("model", "euler_maruyama")] * 2 + [("model", "ode")] + [("exact", "euler_maruyama")] * 2 + [("exact", "ode")]
    em = [r for r in rows if r["sampler"] == "euler_maruyama"]
    assert [r["steps"] for r in em] == [5, 20, 5, 20] and [r["nfe"] for r in em] == [6, 21, 6, 21]  # + denoise
    assert all(r["finite"] and r["sliced_w1"] > 0 for r in rows) and report["floor"] > 0
    exact_best = min(r["sliced_w1"] for r in rows if r["score"] == "exact")
    model_best = min(r["sliced_w1"] for r in rows if r["score"] == "model")
    assert exact_best < 0.5 * model_best
    assert exact_best < 3 * report["floor"]
    assert os.path.getsize(latest(wd, "compare", "compare.png")) > 1000


def test_compare_refuses_unknown_sampler(tmp_path, capsys):
    assert run.main(["--workdir", str(tmp_path), "--mode", "compare",
                     "--config.compare.samplers=('euler_maruyama', 'leapfrog')"]) == 2
    assert "leapfrog" in capsys.readouterr().err
