"""The run directory remembers its run (saved config, frozen model/SDE/data, --checkpoint) and
never overwrites results (one directory per sample/eval/compare run; .npz path last on stdout)."""
import json
import os

import numpy as np
import pytest

import run
from runner.rundir import frozen_differences, load_saved_config, new_run_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "configs", "toy_vp_mlp.py")
TINY = ["--config.training.num_threads=1", "--config.training.progress=False",
        "--config.data.num_train=200", "--config.data.num_test=50",
        "--config.model.hidden=16", "--config.model.num_blocks=1",
        "--config.training.n_iters=4", "--config.training.snapshot_freq=2", "--config.training.batch_size=32",
        "--config.sampling.num_samples=20", "--config.sampling.steps=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("rundir") / "toy")
    assert run.main(["--config", TOY, "--workdir", wd, "--mode", "train"] + TINY) == 0
    return wd


def sample(wd, capsys, *extra):
    code = run.main(["--workdir", wd, "--mode", "sample"] + list(extra))
    out = capsys.readouterr()
    return code, out.out.strip().splitlines(), out.err


def test_saved_config_is_loaded_without_config_flag(trained, capsys):
    saved = load_saved_config(trained)
    assert saved.model.hidden == 16 and saved.data.num_train == 200 and saved.model.name == "mlp"
    # No --config and no overrides: the saved tiny MLP is rebuilt (the default 128-wide one would not load).
    code, out, err = sample(trained, capsys)
    assert code == 0, err
    info = json.load(open(os.path.join(os.path.dirname(out[-1]), "sample.json")))
    assert info["step"] == 4 and info["num_samples"] == 20


@pytest.mark.parametrize("override,field", [
    ("--config.sde.name=subvpsde", "config.sde.name"),
    ("--config.model.hidden=32", "config.model.hidden"),
    ("--config.data.dataset=checkerboard", "config.data.dataset"),
    ("--config.sde.beta_max=10.0", "config.sde.beta_max"),
])
def test_overrides_of_trained_fields_are_refused(trained, capsys, override, field):
    before = sorted(os.listdir(trained))
    for mode in ("sample", "eval", "train"):
        assert run.main(["--workdir", trained, "--mode", mode, override]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and field in err and "trained with" in err
    assert sorted(os.listdir(trained)) == before


def test_config_file_must_agree_with_saved_config(trained, capsys):
    # the experiment file without the command-line overrides of the first train differs in model.hidden ...
    assert run.main(["--config", TOY, "--workdir", trained, "--mode", "sample"]) == 2
    assert "config.model.hidden: 128 (trained with 16)" in capsys.readouterr().err
    # ... with them it agrees, and sampling settings stay free
    assert run.main(["--config", TOY, "--workdir", trained, "--mode", "sample", "--config.sampling.sampler=ddim"]
                    + TINY) == 0


def test_saved_config_is_a_config_file(trained, tmp_path):
    wd2 = str(tmp_path / "copy")
    assert run.main(["--config", os.path.join(trained, "config.py"), "--workdir", wd2, "--mode", "train",
                     "--config.training.n_iters=2"]) == 0
    assert load_saved_config(wd2).model.hidden == 16


def test_frozen_differences_names_each_field():
    import configs.default as d
    a, b = d.get_config(), d.get_config()
    b.model.nf, b.sde.name, b.sampling.steps = 64, "vesde", 3
    diffs = frozen_differences(a, b)
    assert len(diffs) == 2 and diffs[0].startswith("config.model.nf: 32") and "config.sde.name" in diffs[1]


def test_checkpoint_flag_picks_a_step(trained, capsys):
    code, out, _ = sample(trained, capsys, "--checkpoint", "2")
    assert code == 0 and "step000000002" in out[-1]
    assert json.load(open(os.path.join(os.path.dirname(out[-1]), "sample.json")))["step"] == 2
    code, _, err = sample(trained, capsys, "--checkpoint", "3")
    assert code == 2 and "no checkpoint of step 3" in err and "[2, 4]" in err
    code, _, err = sample(trained, capsys, "--checkpoint", "two")
    assert code == 2 and "--checkpoint must be a step" in err
    assert run.main(["--workdir", trained, "--mode", "train", "--checkpoint", "2"]) == 2   # 4 is readable
    assert "the later checkpoint" in capsys.readouterr().err and os.path.exists(os.path.join(trained, "checkpoints",
                                                                                            "checkpoint_000000004.pt"))


def test_runs_never_overwrite_and_npz_is_last_line(trained, capsys):
    code1, out1, _ = sample(trained, capsys)
    first = open(out1[-1], "rb").read()
    code2, out2, _ = sample(trained, capsys, "--config.sampling.seed=7")
    assert code1 == code2 == 0 and out1[-1] != out2[-1]
    assert out1[-1].endswith("samples.npz") and os.path.isfile(out2[-1])
    assert open(out1[-1], "rb").read() == first
    a, b = np.load(out1[-1])["samples"], np.load(out2[-1])["samples"]
    assert a.shape == b.shape == (20, 2) and not np.array_equal(a, b)
    # eval runs get their own directories too
    for _ in range(2):
        assert run.main(["--workdir", trained, "--mode", "eval", "--config.eval.num_samples=4",
                         "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2"]) == 0
    assert len(os.listdir(os.path.join(trained, "eval"))) >= 2


def test_new_run_dir_counts_up(tmp_path):
    a = new_run_dir(str(tmp_path), "samples", 7, "pc")
    b = new_run_dir(str(tmp_path), "samples", 7, "pc")
    assert os.path.basename(a) == "step000000007-pc-000" and os.path.basename(b) == "step000000007-pc-001"


def test_training_writes_loss_plot_grids_and_heldout_loss(tmp_path):
    wd = str(tmp_path / "mon")
    assert run.main(["--config", TOY, "--workdir", wd, "--mode", "train"] + TINY +
                    ["--config.training.eval_freq=2", "--config.training.sample_freq=4",
                     "--config.training.sample_num=8", "--config.training.eval_num_samples=40"]) == 0
    rows = [json.loads(x) for x in open(os.path.join(wd, "metrics.jsonl"))]
    held = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in held] == [2, 4] and all(r["eval_loss"] > 0 and r["eval_loss_stderr"] > 0 for r in held)
    assert os.path.getsize(os.path.join(wd, "loss.png")) > 1000
    assert os.listdir(os.path.join(wd, "train_samples")) == ["step000000004.png"]


def test_unreadable_saved_config_and_cut_metrics_line(trained, tmp_path, capsys):
    import shutil
    wd = str(tmp_path / "copy")
    shutil.copytree(trained, wd)
    with open(os.path.join(wd, "metrics.jsonl"), "a") as f:
        f.write('{"step": 5, "lo')                # a line cut short by kill -9
    assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=6"]) == 0
    assert os.path.getsize(os.path.join(wd, "loss.png")) > 1000
    last = json.loads(open(os.path.join(wd, "metrics.jsonl")).read().splitlines()[-1])
    assert last["step"] == 6                        # the new rows start on a line of their own
    open(os.path.join(wd, "config.py"), "w").write("CONFIG = {broken")
    assert run.main(["--workdir", wd, "--mode", "sample"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: saved config") and "is unreadable" in err and err.count("\n") == 1
