"""Likelihood weighting with importance-sampled t: same expectation as t ~ U(eps, T) (closed form
for Gaussian data and the exact score), much smaller variance; the loop hook and its checks."""
import math

import pytest
import torch

from sde_lib import VPSDE, subVPSDE
from solvers import TimeProposal
from test_losses import C, D, MU, expected_loss, gaussian_score
from training.losses import continuous_dsm_loss_per_sample, get_loss_fn


@pytest.mark.parametrize("sde", [VPSDE(0.1, 20.0, 1000), subVPSDE(0.1, 20.0, 1000)], ids=["vp", "subvp"])
def test_importance_sampled_likelihood_loss_matches_closed_form(sde):
    n = 100000
    gen = torch.Generator().manual_seed(0)
    x0 = MU + C * torch.randn(n, D, generator=gen, dtype=torch.float64)
    expected = expected_loss(sde, True)
    prop = TimeProposal(sde, sde.eps)
    per_is = continuous_dsm_loss_per_sample(sde, gaussian_score(sde, C), x0, gen, likelihood_weighting=True,
                                            proposal=prop)
    per_u = continuous_dsm_loss_per_sample(sde, gaussian_score(sde, C), x0, gen, likelihood_weighting=True)
    se = per_is.std().item() / math.sqrt(n)
    assert abs(per_is.mean().item() - expected) < 4 * se, (per_is.mean().item(), expected, se)
    assert per_u.var().item() > 8 * per_is.var().item()        # the point of it (measured: 19x for VP)


def test_importance_sampling_needs_likelihood_weighting():
    with pytest.raises(ValueError, match="likelihood_weighting"):
        get_loss_fn(VPSDE(), importance_sampling=True)
    with pytest.raises(ValueError, match="continuous"):
        get_loss_fn(VPSDE(), continuous=False, likelihood_weighting=True, importance_sampling=True)
    loss = get_loss_fn(VPSDE(), likelihood_weighting=True, importance_sampling=True)
    assert loss(lambda x, t: -x, torch.randn(8, 3), torch.Generator().manual_seed(0)).shape == ()
