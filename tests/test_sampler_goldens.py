"""Every fast sampler against the official implementations' golden endpoints.

tests/data/sampler_goldens.npz is written by tools/make_sampler_goldens.py (not run here): the
official DPM-Solver and UniPC files, k-diffusion's sampling module and diffusers' schedulers,
each driven by the exact score of a 3-D mixture under the linear VP SDE from the same 200 x_T
on a grid stored with the row. Here scoresde's sampler runs on the same score, x_T, grid (and
noise stream, for the stochastic ones) and must land on the reference's endpoint to the row's
tolerance (1e-9 relative; 1e-5 for diffusers, which steps in float32), with the same NFE.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.analytic import GaussianMixture
from sde_lib import VPSDE
from solvers import SAMPLERS, CountedScore, NoiseSource, sample
from solvers._common import quiet
from solvers.sampling import GRID_OPTIONS, tweedie

DATA = Path(__file__).parent / "data" / "sampler_goldens.npz"
GOLD = np.load(DATA)
ROWS = json.loads(str(GOLD["manifest"]))
SDE = VPSDE(beta_min=0.1, beta_max=20.0)
GM = GaussianMixture(torch.from_numpy(GOLD["weights"]), torch.from_numpy(GOLD["means"]),
                     torch.from_numpy(GOLD["covs"]))
SCORE = GM.score_fn(SDE)
X_T = torch.from_numpy(GOLD["x_T"])


def rel_err(x, golden):
    """max |x - golden| / max |golden| over all paths and coordinates."""
    return ((x - golden).abs().max() / golden.abs().max()).item()


def run_on_grid(row, ts, sampler=None, **override):
    """The registered sampler's function on the stored grid, as `sample()` would call it."""
    spec = SAMPLERS[sampler or row["sampler"]]
    opts = {k: v for k, v in spec.options.items() if k not in GRID_OPTIONS}
    opts.update(row["options"], **override)
    if spec.grid_steps is not None:       # dpm_solver: `steps` is the budget (NFE for split="fast")
        opts["steps"] = row["api"]["steps"] if row["api"] else len(ts) - 1
    seed = row["seed"] if row["seed"] is not None else 0
    noise = NoiseSource(X_T.shape, torch.float64, "cpu", generator=torch.Generator().manual_seed(seed))
    score = CountedScore(SCORE)
    with torch.no_grad():
        x = spec.fn(quiet(SDE), score, X_T.clone(), ts, noise, lambda i, x: None, **opts)
        if row["denoise"]:
            x = tweedie(quiet(SDE), score, x, float(ts[-1]))
    return x, score.nfe


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_matches_reference_on_its_grid(row):
    ts = torch.from_numpy(GOLD[row["id"] + "/ts"])
    golden = torch.from_numpy(GOLD[row["id"] + "/x"])
    x, nfe = run_on_grid(row, ts)
    err = rel_err(x, golden)
    assert err <= row["tol"], f"{row['id']} vs {row['reference']}: relative difference {err:.3g} > {row['tol']}"
    assert nfe == row["nfe"], (row["id"], nfe, row["nfe"])


API_ROWS = [r for r in ROWS if r["api"]]


@pytest.mark.parametrize("row", API_ROWS, ids=[r["id"] for r in API_ROWS])
def test_reference_run_through_sample(row):
    """The reference's run is also scoresde's `sample()` run with the stated steps and schedule:
    the grid it builds is the reference's, and so is the endpoint."""
    seed = row["seed"]
    x, info = sample(SDE, SCORE, None, row["sampler"], x_T=X_T, denoise=row["denoise"], return_trajectory=True,
                     generator=None if seed is None else torch.Generator().manual_seed(seed),
                     **row["api"], **row["options"])
    ts = torch.from_numpy(GOLD[row["id"] + "/ts"])
    assert torch.allclose(info.times, ts, rtol=1e-12, atol=0), row["id"]
    assert rel_err(x, torch.from_numpy(GOLD[row["id"] + "/x"])) <= row["tol"]
    assert info.nfe == row["nfe"]


def _row(row_id):
    return next(r for r in ROWS if r["id"] == row_id)


@pytest.mark.parametrize("row_id,change", [
    ("dpmpp_3m_logsnr_s12", dict(variant="taylor")),
    ("dpmpp_3m_taylor_logsnr_s12", dict(variant="reference")),
    ("dpmpp_2m_logsnr_s8", dict(lower_order_final="k_diffusion")),
    ("dpmpp_2m_logsnr_s12", dict(lower_order_final=True)),
    ("unipc_bh2_o3_logsnr_s20_nolof", dict(lower_order_final="unipc")),
    ("kd_dpmpp_3m_eta0_logsnr_s12", dict(solver_type="midpoint")),
    ("dpm_solver_fast_o3_logsnr_nfe10", dict(split="fixed")),
])
def test_each_convention_matters(row_id, change):
    """Each convention option is needed: flipping it moves the endpoint far beyond the tolerance
    (so the goldens pin the option, not just the method)."""
    row = _row(row_id)
    ts = torch.from_numpy(GOLD[row_id + "/ts"])
    x, _ = run_on_grid(row, ts, **change)
    assert rel_err(x, torch.from_numpy(GOLD[row_id + "/x"])) > 1e-4, (row_id, change)


def test_golden_file_is_small_and_complete():
    assert DATA.stat().st_size < 1_000_000
    covered = {r["sampler"] for r in ROWS}
    for name in ("dpm_solver", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc", "ddim", "euler_ancestral", "edm"):
        assert name in covered, name
    assert {r["options"].get("variant") for r in ROWS if r["sampler"] == "dpmpp_3m"} >= {"reference", "taylor"}
    assert {r["options"].get("split") for r in ROWS if r["sampler"] == "dpm_solver"} == {"fixed", "fast"}
