"""run.py: class-conditional training, train_classifier, guided sampling, inpaint and colorize
end to end on tiny settings, and their errors."""
import json
import os
import re

import numpy as np
import pytest

import run
from test_cli import latest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COND = os.path.join(ROOT, "configs", "digits_cond_vp_ddpmpp.py")
JUDGE = os.path.join(ROOT, "configs", "digits_classifier.py")
TINY = ["--config.training.num_threads=1", "--config.training.progress=False", "--config.model.nf=8",
        "--config.model.num_groups=4", "--config.training.n_iters=3", "--config.training.batch_size=16",
        "--config.classifier.nf=8", "--config.classifier.num_groups=4", "--config.classifier.n_iters=3",
        "--config.classifier.batch_size=16", "--config.sampling.steps=3", "--config.sampling.samples_per_class=2",
        "--config.inpaint.steps=3", "--config.inpaint.num_images=4"]


def test_conditional_digits_pipeline(tmp_path):
    wd = str(tmp_path / "cond")
    assert run.main(["--config", COND, "--workdir", wd, "--mode", "train"] + TINY) == 0
    assert run.main(["--config", COND, "--workdir", wd, "--mode", "train_classifier"] + TINY) == 0
    assert run.main(["--config", JUDGE, "--workdir", wd, "--mode", "train_classifier"] + TINY) == 0
    rep = json.load(open(os.path.join(wd, "judge", "classifier.json")))
    assert rep["noise_conditional"] is False and list(rep["test_accuracy"]) == ["0.0"]
    for g in ("none", "cfg", "classifier", "universal"):
        assert run.main(["--config", COND, "--workdir", wd, "--mode", "sample", f"--config.sampling.guidance={g}",
                         "--config.sampling.guidance_scale=2"] + TINY) == 0
        info = json.load(open(latest(wd, "samples", "sample.json")))
        assert info["guidance"] == g and info["num_samples"] == 20 and info["finite"]
        z = np.load(latest(wd, "samples", "samples.npz"))
        assert z["samples"].shape == (20, 1, 8, 8) and (z["labels"] == np.repeat(np.arange(10), 2)).all()
    assert run.main(["--config", COND, "--workdir", wd, "--mode", "sample", "--config.sampling.class_label=3",
                     "--config.sampling.num_samples=5"] + TINY) == 0
    assert (np.load(latest(wd, "samples", "samples.npz"))["labels"] == 3).all()
    for mask in ("box", "random"):
        assert run.main(["--config", COND, "--workdir", wd, "--mode", "inpaint", f"--config.inpaint.mask={mask}"]
                        + TINY) == 0
        rep = json.load(open(latest(wd, "inpaint", "inpaint.json")))
        assert rep["known_exact"] and rep["num_images"] == 4 and rep["nfe"] == 3 * 2 + 1   # + Tweedie (sampling.denoise)
        assert os.path.getsize(latest(wd, "inpaint", "inpaint.png")) > 500


@pytest.mark.parametrize("flags,message", [
    (["--config.sampling.guidance=magic"], "config.sampling.guidance must be one of .*, got 'magic'"),
    (["--config.sampling.class_label=x"], r"class_label must be 'none', an int or 'all'"),
    (["--config.sampling.class_label=12"], r"config.sampling.class_label must be a class in \[0, 10\), got 12"),
    (["--config.sampling.class_label=none", "--config.sampling.guidance=cfg"], "config.sampling.class_label must be an int or 'all' with sampling.guidance='cfg', got 'none'"),
    (["--config.model.num_classes=0", "--config.sampling.guidance=cfg"], "config.model.num_classes must be > 0 \\(a class-conditional model\\)"),
    (["--config.inpaint.mask=circle"], r"config.inpaint.mask must be one of .*, got 'circle'"),
    (["--config.inpaint.mask=box", "--config.inpaint.box=(0.5, 0.5, 0.2, 0.9)"], "inpaint.box must be"),
])
def test_guidance_and_inpaint_config_errors(flags, message, tmp_path, capsys):
    assert run.main(["--config", COND, "--workdir", str(tmp_path), "--mode", "sample"] + flags) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_colorize_needs_rgb_and_runs_on_rgb(tmp_path, capsys):
    wd = str(tmp_path / "c")
    assert run.main(["--config", COND, "--workdir", wd, "--mode", "colorize"] + TINY) == 2
    assert "needs 3-channel (RGB) images" in capsys.readouterr().err
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", arr)
    rgb = ["--config.data.dataset=array", f"--config.data.path={tmp_path / 'rgb.npy'}",
           "--config.data.num_channels=3", "--config.model.num_classes=0", "--config.sampling.class_label=none"]
    assert run.main(["--config", COND, "--workdir", wd, "--mode", "train"] + TINY + rgb) == 0
    assert run.main(["--config", COND, "--workdir", wd, "--mode", "colorize"] + TINY + rgb) == 0
    z = np.load(latest(wd, "colorize", "colorize.npz"))
    # float32 rounding of x - mean(x) + grey: relative to the size of the (untrained, large) output
    np.testing.assert_allclose(z["output"].mean(1), z["original"].mean(1), rtol=0,
                               atol=4e-7 * max(1.0, float(np.abs(z["output"]).max())))
