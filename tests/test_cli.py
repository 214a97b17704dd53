"""run.py end to end on tiny configs, and its error messages."""
import json
import math
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
    info = json.load(open(latest(wd, "samples", "sample.json")))
    assert info["sampler"] == "ddim" and info["nfe"] == 3 + 1 and info["finite"]    # 3 steps + Tweedie
    ev = json.load(open(latest(wd, "eval", "eval.json")))
    assert "17 levels" in ev["quantity"] and f"log2(17/2) = {math.log2(17 / 2):.4f}" in ev["quantity"]
    assert {"ode", "elbo"} <= set(ev) and ev["num_examples"] == 4 and ev["repeats"] == 3
    for r in ("ode", "elbo"):
        s = ev[r]          # bits/dim of discrete data are >= 0; a 2-step model is far from the data
        assert s["bits_per_dim"] > math.log2(17 / 2) and s["stderr"] > 0
    assert ev["elbo"]["nfe_per_example"] == 32 and ev["ode"]["nfe_per_example"] == ev["ode"]["nfe"] / 3   # batched calls / (repeats x 1 batch)
    assert ev["bits_per_dim"] == ev["ode"]["bits_per_dim"]
    assert 1.0 < ev["baselines"]["per_pixel"] < ev["bits_per_dim"]      # the trained-for-2-steps model loses


@pytest.mark.parametrize("argv,message", [
    (["--config.sde.name=foo"], "config.sde: unknown SDE name 'foo'"),
    (["--config.model.name=resnet"], "config.model.name must be one of ['ddpm', 'ddpmpp', 'diffusers_ddpm', 'mlp', 'ncsnpp'], got 'resnet'"),
    (["--config.sampling.sampler=magic"], "config.sampling.sampler must be one of ['ancestral',"),
    (["--config.training.n_iters=-3"], "config.training.n_iters must be an int >= 0, got -3"),
    (["--config.training.n_iters=abc"], "bad value 'abc' for config.training.n_iters"),
    (["--config.training.nope=1"], "unknown config field 'config.training.nope'"),
    (["--mode", "dance"], "unknown mode 'dance'"),
    (["--frobnicate"], "unrecognised argument '--frobnicate'"),
    (["--config", "/nonexistent/cfg.py"], "config file '/nonexistent/cfg.py' does not exist"),
    (["--config.data.dataset=mnist"], "config.data.dataset must be one of ['8gaussians',"),
    (["--config.compare.seeds=(0,)"], "needs at least 2 seeds"),
    (["--config.compare.nfe=(1, 5)"], "config.compare.nfe must be ints >= 2 (score evaluations), got (1, 5)"),
    (["--config.compare.primary_metric=fid"], "config.compare.primary_metric must be one of ['component_tv',"),
    (["--config.compare.samplers=pc(predictor=ancestral, colour=red)"], "unknown option(s) ['colour'] for 'pc'"),
    (["--config.compare.samplers=pc(steps=0)"], "steps must be an int >= 1, got 0"),
    (["--config.compare.samplers=magic(steps=3)"], "(unknown sampler 'magic'), got 'magic(steps=3)'"),
    (["--config.compare.samplers=pc[steps=3]"], "(bad sampler entry), got 'pc[steps=3]'"),
    (["--config.compare.samplers=ddim, ddim"], "lists an entry twice"),
    (["--config.compare.quick=True", "--config.compare.nfe=(5,)"],
     "config.compare.quick must be False when compare.nfe is set"),
    (["--config.compare.quick=True", "--config.compare.num_samples=50"], "keep compare.num_samples=50"),
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
    assert p.stderr.startswith("error: config.sde: unknown SDE name 'foo'") and "Traceback" not in p.stderr


def test_compare_study_on_a_mixture_is_resumable_and_has_references(tmp_path):
    """The study on mixture data: budgets map to steps through the measured NFE per step, every
    cell runs per seed, the exact-score runs (discretisation error only) beat a barely trained
    network's, the floor sits below the Gaussian, and a rerun skips every finished cell."""
    wd = str(tmp_path / "mix")
    cfg = os.path.join(ROOT, "configs", "toy_mixture_vp_mlp.py")
    args = ["--config", cfg, "--workdir", wd] + TINY_TOY + [
        "--config.compare.samplers=euler_maruyama,ode", "--config.compare.nfe=(5, 21)",
        "--config.compare.tolerances=(1e-3,)", "--config.compare.num_samples=200",
        "--config.compare.seeds=(0, 1)", "--config.compare.progress=False", "--config.data.num_test=300",
        "--config.data.num_train=600"]
    assert run.main(args + ["--mode", "train"]) == 0
    assert run.main(args + ["--mode", "compare"]) == 0
    study = os.path.dirname(latest(wd, "compare", "compare.json"))     # compare/step<N>-<study hash>/
    report = json.load(open(os.path.join(study, "compare.json")))
    rows = report["rows"]
    assert len(rows) == 2 * 2 + 2 * (2 + 1) * 2          # references + (model, exact) x budgets x seeds
    em = [r for r in rows if r["sampler"] == "euler_maruyama" and r["score"] == "model"]
    assert [(r["nfe_budget"], r["steps"], r["nfe"]) for r in em] == [(5, 4, 5)] * 2 + [(21, 20, 21)] * 2
    ode = [r for r in rows if r["sampler"] == "ode"]
    assert all(r["tol"] == 1e-3 and "steps" not in r and r["nfe"] > 21 for r in ode)   # adaptive: tolerances
    assert all(r["n"] == 200 and r["finite"] for r in rows)      # min(num_samples, train, test)
    agg = {(a["score"], a["sampler"], a["label"]): a for a in report["aggregates"]}
    floor, gauss = agg[("reference", "floor", "floor")], agg[("reference", "gaussian", "gaussian")]
    assert report["primary_metric"] == "sliced_w1" and floor["sliced_w1_se"] > 0
    assert floor["sliced_w1"] + 3 * floor["sliced_w1_se"] < gauss["sliced_w1"]
    assert abs(floor["dlogp"]) < 0.2 < -gauss["dlogp"]     # exact log-density: Gaussian fills the gap
    exact = agg[("exact", "euler_maruyama", "nfe=21")]
    model = agg[("model", "euler_maruyama", "nfe=21")]
    assert exact["sliced_w1"] < 0.5 * model["sliced_w1"] and exact["sliced_w1"] < 3 * floor["sliced_w1"]
    md = open(os.path.join(study, "compare.md")).read()
    assert "| exact | euler_maruyama |" in md and "NFE 21" in md and "± " in md
    assert os.path.getsize(os.path.join(study, "compare.png")) > 1000
    assert os.path.exists(os.path.join(study, "compare_grids", "exact_ode.png"))
    cells = open(os.path.join(study, "compare_cells.jsonl")).read()
    assert run.main(args + ["--mode", "compare"]) == 0            # resumed: nothing recomputed
    assert open(os.path.join(study, "compare_cells.jsonl")).read() == cells
    assert json.load(open(os.path.join(study, "compare.json")))["aggregates"] == report["aggregates"]
    # one more seed: a study of its own (the first study's report is not rewritten); only its new cells run
    first = {f: open(os.path.join(study, f), "rb").read() for f in ("compare.json", "compare.md", "compare.png")}
    assert run.main(args + ["--mode", "compare", "--config.compare.seeds=(0, 1, 2)"]) == 0
    study2 = os.path.dirname(latest(wd, "compare", "compare.json"))
    assert study2 != study and all(open(os.path.join(study, f), "rb").read() == v for f, v in first.items())
    log2 = open(os.path.join(study2, "compare_cells.jsonl")).read().splitlines()
    assert log2[:len(cells.splitlines())] == cells.splitlines()                 # reused, not recomputed
    new_rows = log2[len(cells.splitlines()):]
    assert len(new_rows) == len(rows) // 2 and all(json.loads(r)["seed"] == 2 for r in new_rows)
    assert len(json.load(open(os.path.join(study2, "compare.json")))["rows"]) == len(rows) * 3 // 2


def test_compare_sampler_variants_run_their_options(tmp_path):
    """A variant entry ("name(option=value, steps=N)") runs the sampler with those options at that one
    step count: `euler_maruyama(steps=7)` reproduces the ladder's euler_maruyama cell at 7 steps
    metric for metric (same per-sample seeds), and a PC variant spends the NFE its options imply."""
    wd = str(tmp_path / "mix")
    cfg = os.path.join(ROOT, "configs", "toy_mixture_vp_mlp.py")
    entries = "euler_maruyama, euler_maruyama(steps=7), pc(predictor=probability_flow, corrector=langevin, steps=4)"
    args = ["--config", cfg, "--workdir", wd] + TINY_TOY + [
        f"--config.compare.samplers={entries}", "--config.compare.nfe=(8,)", "--config.compare.num_samples=100",
        "--config.compare.seeds=(0, 1)", "--config.compare.progress=False", "--config.data.num_test=300",
        "--config.data.num_train=600", "--config.sampling.denoise=True"]
    assert run.main(args + ["--mode", "train"]) == 0
    assert run.main(args + ["--mode", "compare"]) == 0
    study = os.path.dirname(latest(wd, "compare", "compare.json"))
    rows = json.load(open(os.path.join(study, "compare.json")))["rows"]
    by = {(r["score"], r["sampler"], r["seed"]): r for r in rows}
    for score in ("model", "exact"):
        for seed in (0, 1):
            ladder, fixed = by[(score, "euler_maruyama", seed)], by[(score, "euler_maruyama(steps=7)", seed)]
            assert (ladder["steps"], fixed["steps"], fixed["label"], fixed["nfe"]) == (7, 7, "steps=7", 8)
            assert all(ladder[k] == fixed[k] for k in ("sliced_w1", "dlogp", "component_tv"))
            pc = by[(score, "pc(predictor=probability_flow, corrector=langevin, steps=4)", seed)]
            assert pc["nfe"] == 4 * 2 + 1 and pc["options"]["predictor"] == "probability_flow"
    assert os.path.exists(os.path.join(study, "compare_grids",
                                       "exact_pc-predictor-probability_flow-corrector-langevin-steps-4.png"))


def test_compare_on_digits_scores_in_the_classifier_feature_space(tmp_path):
    """Image data: classifier features (cached, accuracy recorded), label histograms, sample grids."""
    wd = str(tmp_path / "digits")
    args = ["--workdir", wd, "--config.training.num_threads=1", "--config.training.progress=False",
            "--config.model.nf=8", "--config.training.n_iters=2", "--config.compare.samplers=('ddim', 'pc')",
            "--config.compare.nfe=(5, 9)", "--config.compare.seeds=(0, 1)", "--config.compare.num_samples=40",
            "--config.compare.feature_epochs=2", f"--config.compare.feature_cache={tmp_path / 'feat'}",
            "--config.compare.progress=False"]
    assert run.main(args + ["--mode", "train"]) == 0
    assert run.main(args + ["--mode", "compare"]) == 0
    study = os.path.dirname(latest(wd, "compare", "compare.json"))
    report = json.load(open(os.path.join(study, "compare.json")))
    assert report["primary_metric"] == "fd" and report["features"]["kind"] == "classifier"
    assert 0 < report["features"]["test_accuracy"] <= 1 and len(report["reference_label_hist"]) == 10
    pc = [r for r in report["rows"] if r["sampler"] == "pc"]
    assert [(r["steps"], r["nfe"]) for r in pc] == [(2, 5)] * 2 + [(4, 9)] * 2
    agg = {(a["sampler"], a["label"]): a for a in report["aggregates"]}
    for key in ("fd", "kid", "precision", "recall", "density", "coverage", "label_tv", "sliced_w1"):
        assert math.isfinite(agg[("ddim", "nfe=9")][key]) and agg[("ddim", "nfe=9")][key + "_se"] >= 0
    # an untrained network draws noise: far worse than the floor
    assert agg[("floor", "floor")]["fd"] + 5 * agg[("floor", "floor")]["fd_se"] < agg[("ddim", "nfe=9")]["fd"]
    for name in ("model_ddim.png", "model_pc.png", "reference_gaussian.png", "reference_floor.png"):
        assert os.path.exists(os.path.join(study, "compare_grids", name))
    # a cell grid lost after the run is redrawn on resume, pixel for pixel (per-sample seeds)
    import glob
    from PIL import Image
    cell_grid = glob.glob(os.path.join(study, "compare_grids", "model_pc_nfe5_*.png"))[0]
    before = np.asarray(Image.open(cell_grid))
    os.remove(cell_grid)
    assert run.main(args + ["--mode", "compare"]) == 0
    assert np.array_equal(np.asarray(Image.open(cell_grid)), before)


def test_compare_refuses_unknown_sampler(tmp_path, capsys):
    assert run.main(["--workdir", str(tmp_path), "--mode", "compare",
                     "--config.compare.samplers=('euler_maruyama', 'leapfrog')"]) == 2
    assert "leapfrog" in capsys.readouterr().err
