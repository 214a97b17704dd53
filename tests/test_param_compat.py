"""Run directories made before the parameterisation object (no model.prediction / label /
data_range in their saved config) load and give bit-identical samples and losses.

The fixture (tests/data/param_compat/, run directories made by tools/make_param_fixture.py on main
at 75b3065; expected.pt re-recorded by `record` with main's code at e1ceea9, whose sampler change to
DPM-Solver++(2M) moved only the VP dpmpp_2m samples, by float32 rounding) holds tiny MLP runs on VP, sub-VP and VE (continuous) and VP/VE (discrete DDPM/SMLD), with
the samples of eight samplers, the held-out loss of the training monitor and the training
loss that main's code gave.
"""
import os
import shutil

import sys

import pytest
import torch

from runner.rundir import load_saved_config

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "data", "param_compat")
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
from make_param_fixture import record  # noqa: E402  (the fixture's own recipe, shared)


@pytest.fixture(scope="module")
def expected():
    return torch.load(os.path.join(FIXTURE, "expected.pt"), weights_only=True)


@pytest.mark.parametrize("run", ["vp", "subvp", "ve", "vp_discrete", "ve_discrete"])
def test_saved_runs_are_bit_identical(run, expected, tmp_path):
    wd = str(tmp_path / run)
    shutil.copytree(os.path.join(FIXTURE, run), wd)
    config = load_saved_config(wd)
    assert "prediction" not in open(os.path.join(wd, "config.py")).read()
    assert config.model.prediction == "auto" and config.model.label == "auto"
    got = record(wd)
    keys = [k for k in expected if k.startswith(run + "/")]
    assert len(keys) == len(got) == 10
    for k in keys:
        a, b = got[k[len(run) + 1:]], expected[k]
        assert a.dtype == b.dtype and torch.equal(a, b), k
