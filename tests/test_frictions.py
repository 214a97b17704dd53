"""A newcomer's frictions: a corrupt last checkpoint names what to do and the flag that
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


PLUGIN = '''
from solvers import register_sampler

def half_euler(sde, score, x, ts, noise, callback):
    """Euler-Maruyama on the reverse SDE (a plugin's sampler)."""
    rsde = sde.reverse(score)
    for i in range(len(ts) - 1):
        drift, g = rsde.sde(x, ts[i].expand(x.shape[0]))
        dt = ts[i] - ts[i + 1]
        x = x - drift * dt + g[:, None] * dt.sqrt() * noise.randn()
        callback(i, x)
    return x

register_sampler("half_euler", half_euler, options={})
'''


def test_plugins_make_a_users_sampler_usable_from_the_cli(tmp_path, capsys, monkeypatch):
    import json
    import sys

    import solvers
    monkeypatch.chdir(tmp_path)                 # plugins are found in the current directory
    (tmp_path / "my_plugin_17.py").write_text(PLUGIN)
    wd = str(tmp_path / "w")
    try:
        assert run.main(["--workdir", wd, "--mode", "train", "--config.training.n_iters=2"] + TINY) == 0
        assert run.main(["--workdir", wd, "--mode", "sample", "--config.sampling.sampler=half_euler",
                         "--config.sampling.steps=3", "--config.sampling.num_samples=8"] + TINY) == 2
        assert "got 'half_euler'" in capsys.readouterr().err          # without the plugin: not a known sampler
        assert run.main(["--workdir", wd, "--mode", "sample", "--config.plugins=my_plugin_17",
                         "--config.sampling.sampler=half_euler", "--config.sampling.steps=3",
                         "--config.sampling.num_samples=8"] + TINY) == 0
        out = capsys.readouterr().out.strip().splitlines()
        info = json.load(open(os.path.join(os.path.dirname(out[-1]), "sample.json")))
        assert info["sampler"] == "half_euler" and info["nfe"] == 3 + 1
        assert run.main(["--workdir", wd, "--mode", "sample", "--config.plugins=('no_such_module_17',)"] + TINY) == 2
        err = capsys.readouterr().err
        assert "config.plugins: no module named 'no_such_module_17'" in err and err.count("\n") == 1
        assert run.main(["--workdir", wd, "--mode", "sample", "--config.plugins=('bad name',)"] + TINY) == 2
        assert "'bad name' is not one" in capsys.readouterr().err
    finally:
        if "half_euler" in solvers.SAMPLERS:
            solvers.unregister_sampler("half_euler")
        sys.modules.pop("my_plugin_17", None)


def test_each_compare_study_has_its_own_directory_and_reuses_sibling_cells(tmp_path):
    """Studies of one checkpoint and context (data, SDE, features, ...) that differ in their sampler
    list get different directories (neither report rewrites the other); a new study finds the
    finished cells of its siblings, and a study of another context does not."""
    import json

    from runner.compare import compare_paths, sibling_cells
    ctx = {"data": "digits", "n": 10}
    a = compare_paths(str(tmp_path), 5, ctx, {"samplers": ["ddim"]})
    b = compare_paths(str(tmp_path), 5, ctx, {"samplers": ["ddim", "unipc"]})
    other = compare_paths(str(tmp_path), 5, {"data": "digits", "n": 20}, {"samplers": ["ddim"]})
    assert len({a["dir"], b["dir"], other["dir"]}) == 3 and a["dir"].rsplit("-", 1)[0] == b["dir"].rsplit("-", 1)[0]
    assert compare_paths(str(tmp_path), 5, ctx, {"samplers": ["ddim"]}) == a          # a rerun resumes there
    for p, key in ((a, "cell-a"), (other, "cell-other")):
        os.makedirs(p["dir"])
        with open(p["cells"], "w") as f:
            f.write(json.dumps({"key": key}) + "\n")
    assert set(sibling_cells(b)) == {"cell-a"} and sibling_cells(a) == {}
