"""--mode eval: ODE NLL and ELBO with repeats, the SE split, baselines, conventions and bad values."""
import json
import math

import pytest

import run
from test_cli import latest

TINY = ["--config.training.num_threads=1", "--config.training.progress=False", "--config.model.nf=8",
        "--config.training.n_iters=2", "--config.eval.num_samples=6", "--config.eval.rtol=1e-2",
        "--config.eval.atol=1e-2", "--config.eval.batch_size=4", "--config.eval.elbo_n_t=4"]


def test_eval_digits_both_estimators_and_baselines(tmp_path):
    wd = str(tmp_path / "d")
    assert run.main(["--workdir", wd, "--mode", "train"] + TINY) == 0
    assert run.main(["--workdir", wd, "--mode", "eval", "--config.eval.repeats=2"] + TINY) == 0
    ev = json.load(open(latest(wd, "eval", "eval.json")))
    assert ev["convention"]["num_levels"] == 17 and "17 levels" in ev["quantity"]
    assert ev["estimator"] == "ode" and ev["bits_per_dim"] == ev["ode"]["bits_per_dim"]
    for r in ("ode", "elbo"):
        s = ev[r]
        assert math.isfinite(s["bits_per_dim"]) and s["nfe"] > 0
        # the two parts of the standard error add up (in variance) to the whole; the image part is
        # clamped at 0 only when the estimator's share alone exceeds the whole (few images, noisy estimator)
        if s["stderr_images"] > 0:
            assert s["stderr_images"] ** 2 + s["stderr_estimator"] ** 2 == pytest.approx(s["stderr"] ** 2, rel=1e-6)
        else:
            assert s["stderr_estimator"] >= s["stderr"]
    b = ev["baselines"]
    assert set(b) == {"per_pixel", "gaussian"} and set(ev["baselines_stderr"]) == {"per_pixel", "gaussian"}
    assert 1.5 < b["per_pixel"] < 4.0 and b["per_pixel"] < b["gaussian"] + 1.0
    assert ev["num_examples"] == 6 and ev["repeats"] == 2 and ev["eps"] == 1e-3
    # 256-level convention on request; float64 and eps=1e-5 options; ELBO only
    assert run.main(["--workdir", wd, "--mode", "eval", "--config.eval.repeats=1", "--config.eval.estimator=elbo",
                     "--config.eval.dtype=float64", "--config.eval.eps=1e-5"] + TINY) == 0
    ev = json.load(open(latest(wd, "eval", "eval.json")))
    assert ev["estimator"] == "elbo" and "ode" not in ev and ev["dtype"] == "float64" and ev["eps"] == 1e-5
    assert ev["stderr_estimator"] is None          # one repeat: no split
    # the 256-level convention is a data setting (the model is trained on 8-bit bin centres): its own workdir
    wd = str(tmp_path / "d256")
    assert run.main(["--workdir", wd, "--mode", "train", "--config.data.num_levels=256"] + TINY) == 0
    assert run.main(["--workdir", wd, "--mode", "eval", "--config.eval.repeats=1",
                     "--config.eval.estimator=ode"] + TINY) == 0
    ev8 = json.load(open(latest(wd, "eval", "eval.json")))
    assert ev8["convention"]["num_levels"] == 256 and ev8["baselines"]["gaussian"] > 5


@pytest.mark.parametrize("flag,message", [
    ("--config.eval.batch_size=0", "config.eval.batch_size must be an int >= 1, got 0"),
    ("--config.eval.estimator=vlb", "config.eval.estimator must be one of ['both', 'elbo', 'ode'], got 'vlb'"),
    ("--config.eval.repeats=0", "config.eval.repeats must be an int >= 1"),
    ("--config.eval.elbo_n_t=1", "config.eval.elbo_n_t must be an int >= 2"),
    ("--config.eval.dtype=float16", "config.eval.dtype must be one of ['float32', 'float64'], got 'float16'"),
    ("--config.eval.eps=2.0", "config.eval.eps must be a finite number in (0.0, 1.0), got 2.0"),
    ("--config.data.num_levels=300", "config.data.num_levels must be 0 (the data's own levels) or an int in 2..256, got 300"),
])
def test_eval_refuses_bad_values(flag, message, tmp_path, capsys):
    assert run.main(["--workdir", str(tmp_path / "w"), "--mode", "eval", flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_standard_error_split_by_hand():
    """_summary's split of Var(mean) into images and estimator, on numbers done by hand: per-example
    means (1, 3) over R = 2 repeats with within-example spread +-1 -> total = Var(1, 3)/2 = 1,
    within = mean(Var(0, 2), Var(2, 4))/(2 * 2) = 2/4 = 0.5, images = 0.5; and a clamped case."""
    import torch
    from runner.evaluate import _summary
    s = _summary(torch.tensor([[0.0, 2.0], [2.0, 4.0]], dtype=torch.float64))
    assert s["bits_per_dim"] == 2.0 and s["stderr"] == pytest.approx(1.0)
    assert s["stderr_estimator"] == pytest.approx(math.sqrt(0.5)) and s["stderr_images"] == pytest.approx(math.sqrt(0.5))
    s = _summary(torch.tensor([[0.0, 4.0], [1.0, 3.0]], dtype=torch.float64))     # means 2, 2: no image spread
    assert s["stderr"] == 0.0 and s["stderr_images"] == 0.0
    assert s["stderr_estimator"] == pytest.approx(math.sqrt((8.0 + 2.0) / 2 / 4))
