"""eval.pixel_convention: score_sde's 8-bit pixel grid for bits/dim beside the data's own levels."""
import glob
import json
import math
import os
import shutil

import pytest
import torch

import run
from solvers import bits_per_dim
from training.data import dequantize
from training.levels import levels_to_model, model_to_levels, to_8bit_bins


def test_8bit_data_is_unchanged_and_gives_score_sdes_points(gen):
    v = torch.randint(0, 256, (64, 3, 4, 4), generator=gen)
    x = levels_to_model(v, 256)
    assert torch.equal(to_8bit_bins(x, 256), x)
    # score_sde: img = k/255; (U + img * 255) / 256; centred 2y - 1. Ours: x - 1/256 + U/128.
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(3))
    ours = dequantize(x, torch.Generator().manual_seed(3), num_levels=256)
    ref = 2 * (u + (v.float() / 255.0) * 255.0) / 256.0 - 1
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)


def test_fewer_levels_map_to_their_8bit_values():
    k = torch.arange(17)
    got = model_to_levels(to_8bit_bins(levels_to_model(k, 17), 17), 256)
    assert got.tolist() == [round(i * 255 / 16) for i in range(17)] and got[0] == 0 and got[-1] == 255


def test_bin_histogram_density_closed_form(gen):
    """For a density uniform within each of the 17 bins of every pixel, p = prod_d P(k_d) / (2/17),
    the 'levels' bits/dim is exactly -log2 P(k)/D and the 'score_sde' one adds log2(256/17):
    each 8-bit bin lies inside its 17-level bin, and the offset is 7 instead of log2(17/2)."""
    L, D = 17, 12
    P = torch.rand(L, generator=gen, dtype=torch.float64) + 0.1
    P = P / P.sum()
    k = torch.randint(0, L, (200, D), generator=gen)
    x = levels_to_model(k, L).double()

    def logp(y):     # the histogram density at y (its 17-level bin index)
        return (torch.log(P[model_to_levels(y, L)]) - math.log(2 / L)).sum(1)
    exact = -torch.log2(P[k]).sum(1) / D
    lv = dequantize(x, gen, num_levels=L)
    assert torch.allclose(bits_per_dim(logp(lv), lv.shape, num_levels=L), exact, atol=1e-12)
    x8 = to_8bit_bins(x, L)
    sd = dequantize(x8, gen, num_levels=256)
    assert torch.equal(model_to_levels(sd, L), k)                      # still inside the 17-level bins
    assert torch.allclose(bits_per_dim(logp(sd), sd.shape, num_levels=256), exact + math.log2(256 / 17), atol=1e-12)


def _latest(wd):
    return json.load(open(max(glob.glob(os.path.join(wd, "eval", "*", "eval.json")), key=os.path.getmtime)))


@pytest.mark.slow
def test_eval_in_both_conventions(tmp_path):
    wd = str(tmp_path / "d")
    base = ["--workdir", wd, "--config.training.num_threads=1", "--config.training.progress=False",
            "--config.model.nf=8", "--config.training.n_iters=1", "--config.eval.num_samples=4",
            "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2", "--config.eval.estimator=ode",
            "--config.eval.repeats=1", "--config.sampling.num_samples=4", "--config.sampling.steps=3"]
    assert run.main(base + ["--mode", "train"]) == 0
    assert run.main(base + ["--mode", "eval"]) == 0
    a = _latest(wd)
    assert run.main(base + ["--mode", "eval", "--config.eval.pixel_convention=score_sde"]) == 0
    b = _latest(wd)
    assert a["convention"]["pixel_convention"] == "levels" and a["convention"]["num_levels"] == 17
    assert b["convention"]["pixel_convention"] == "score_sde" and b["convention"]["num_levels"] == 256
    assert "offset log2(256/2) = 7.0000" in b["quantity"]


def test_bad_convention_and_continuous_data_are_refused(tmp_path, capsys):
    assert run.main(["--workdir", str(tmp_path / "x"), "--mode", "eval",
                     "--config.eval.pixel_convention=k255"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config.eval.pixel_convention must be one of ['levels', 'score_sde'], got 'k255'")
    assert not os.path.exists(tmp_path / "x")
    toy = str(tmp_path / "toy")                      # a trained run on continuous (2-D) data
    shutil.copytree(os.path.join(os.path.dirname(__file__), "data", "param_compat", "vp"), toy)
    assert run.main(["--workdir", toy, "--mode", "eval", "--config.training.num_threads=1",
                     "--config.eval.pixel_convention=score_sde"]) == 2
    assert "is continuous (no levels): use 'levels'" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(toy, "eval"))
