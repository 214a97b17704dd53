"""Inverse problems through the sampler registry: every sampler runs inpainting by replacement, with
its options, seeds and schedules; resampling is refused with a reason where it cannot work."""
import math

import pytest
import torch

import models
import solvers
from models.analytic import GaussianMixture
from sde_lib import VPSDE

F64 = torch.float64
N = 300
GM = GaussianMixture([1.0], torch.tensor([[0.3, -0.8]], dtype=F64), torch.tensor([[0.5, 0.2]], dtype=F64))
FAST = ("pc", "ddim", "heun", "dpmpp_2m", "euler_ancestral", "ode")


def _opts(name):
    spec = solvers.SAMPLERS[name]
    if name == "annealed_langevin":           # corrector only: needs many levels on VP
        return {"steps": 200}
    return {"steps": 20} if spec.fixed_grid or name == "sde" else {"rtol": 1e-3, "atol": 1e-3}


def _check_sampler(name):
    """For a diagonal Gaussian the unknown coordinate is independent of the observed one, so
    replacement must give it the same law as the sampler's own unconditional samples (same steps,
    same discretisation error): means and variances agree within 4.5 standard errors."""
    sde = VPSDE()
    xk = torch.tensor([5.0, 0.0], dtype=F64).expand(N, 2)       # observed far from the mean
    x, info = solvers.inpaint(sde, GM.score_fn(sde), xk, torch.tensor([True, False]), sampler=name,
                              generator=torch.Generator().manual_seed(0), **_opts(name))
    ref, _ = solvers.sample(sde, GM.score_fn(sde), (N, 2), name, dtype=F64,
                            generator=torch.Generator().manual_seed(1), **_opts(name))
    assert torch.equal(x[:, 0], xk[:, 0]) and info.sampler == f"inpaint:{name}"
    a, b = x[:, 1], ref[:, 1]
    se = math.sqrt(a.var() / N + b.var() / N)
    assert abs(a.mean() - b.mean()) < 4.5 * se, (a.mean(), b.mean())
    assert abs(a.var() / b.var() - 1) < 4.5 * math.sqrt(4 / N), (a.var(), b.var())
    assert abs(a.mean() + 0.8) < 0.6       # and it is the unknown coordinate's law, not the observed one's


@pytest.mark.parametrize("name", FAST)
def test_inpaint_runs_through_the_sampler_registry(name):
    _check_sampler(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(solvers.SAMPLERS) - set(FAST)))
def test_inpaint_runs_through_every_other_sampler(name):
    _check_sampler(name)


def test_inpaint_takes_seeds_and_schedules():
    """Per-sample seeds: an inpainted sample is the same drawn alone or in a batch."""
    sde = VPSDE()
    xk = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.5, 0.0]], dtype=F64)
    mask = torch.tensor([True, False])
    kw = dict(sampler="dpmpp_2m", steps=8, schedule="karras")
    x, info = solvers.inpaint(sde, GM.score_fn(sde), xk, mask, seeds=[3, 4, 5], **kw)
    x1, _ = solvers.inpaint(sde, GM.score_fn(sde), xk[1:2], mask, seeds=[4], **kw)
    torch.testing.assert_close(x[1:2], x1, rtol=0, atol=1e-12)
    assert info.options["schedule"] == "karras" and info.nfe == 8


def test_resampling_is_refused_with_a_reason_where_it_cannot_work():
    sde = VPSDE()
    xk = torch.zeros(4, 2, dtype=F64)
    mask = torch.tensor([True, False])
    refused = {n: s.resampling_refusal() for n, s in solvers.SAMPLERS.items() if s.resampling_refusal()}
    assert {"ode", "sde", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc", "dpm_solver"} <= set(refused)
    assert not {"pc", "euler_maruyama", "ddim", "heun", "edm"} & set(refused)
    for name, reason in refused.items():
        with pytest.raises(ValueError, match="recurrence=2: " + reason.split("(")[0].split(";")[0][:30]):
            solvers.inpaint(sde, GM.score_fn(sde), xk, mask, sampler=name, recurrence=2, steps=3)
    x, info = solvers.inpaint(sde, GM.score_fn(sde), xk, mask, sampler="heun", recurrence=3, steps=4,
                              generator=torch.Generator().manual_seed(0))
    assert info.nfe == 4 * 3 * 2 and info.steps == 12 and torch.equal(x[:, 0], xk[:, 0])


def test_register_model_refuses_a_taken_name():
    with pytest.raises(ValueError, match="'mlp' is already registered"):
        models.register_model("mlp")
