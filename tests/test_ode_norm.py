"""The ODE error norm: per-sample control keeps every sample's likelihood as accurate in a batch as alone
(the batch-wide RMS lets easy samples dilute a hard one's error)."""
import pytest
import torch

from models.analytic import make_mixture
from sde_lib import VPSDE
from solvers import log_likelihood
from solvers.ode import error_norm


@pytest.fixture(scope="module")
def setup():
    gm = make_mixture("random", D=3, K=3, scale=1.5, std=0.6, generator=torch.Generator().manual_seed(2))
    sde = VPSDE()
    x = gm.sample(200, generator=torch.Generator().manual_seed(0))
    truth = gm.log_prob_t(sde, x, torch.full((200,), sde.eps, dtype=x.dtype))
    return gm, sde, x, truth, gm.marginal(sde, 1.0)


def _errors(gm, sde, x, truth, pT, norm, tol=1e-3):
    r = log_likelihood(sde, gm.score_fn(sde), x, rtol=tol, atol=tol, norm=norm)
    return (pT.log_prob(r.z) + r.delta_logp - truth).abs()


def test_per_sample_norm_never_loses_accuracy_in_a_batch(setup):
    """The 5 worst samples of the batch, each solved alone and in the batch of 200: with norm="sample"
    the batch's shared steps satisfy every sample's own error test, so batching does not make any of
    them worse than alone; with norm="batch" the worst one is several times worse in the batch."""
    gm, sde, x, truth, pT = setup
    ratios = {}
    for norm in ("sample", "batch"):
        in_batch = _errors(gm, sde, x, truth, pT, norm)
        worst = in_batch.argsort(descending=True)[:5]
        alone = torch.stack([_errors(gm, sde, x[i:i + 1], truth[i:i + 1], pT, norm)[0] for i in worst.tolist()])
        ratios[norm] = (in_batch[worst] / alone).tolist()
    assert max(ratios["sample"]) <= 1.0, ratios
    assert max(ratios["batch"]) > 5.0, ratios


def test_norms_on_tuples_and_choices():
    B = 4
    err = (torch.zeros(B, 3), torch.zeros(B))
    err[0][2, 0] = 2.0                                        # one entry of sample 2 has error 2
    assert error_norm("sample", B)(err).item() == pytest.approx((4.0 / 4) ** 0.5)       # its RMS over 3 + 1 entries
    assert error_norm("batch", B)(err).item() == pytest.approx((4.0 / 16) ** 0.5)
    assert error_norm("mixed", B)(err).item() == pytest.approx((4.0 / 12) ** 0.5)
    with pytest.raises(ValueError, match="error norm"):
        error_norm("l1", B)
