"""One result convention for estimators: `.value`, `.stderr`, `.nfe`, `.info` (the DESIGN names
res.logp, res.nfe, res.z and `x, info = sample(...)` keep working)."""
import torch

from evaluation.metrics import kernel_inception_distance
from models.analytic import GaussianMixture
from sde_lib import VPSDE
from solvers import elbo, log_likelihood, sample
from solvers.metrics import dlogp

F64 = torch.float64


def test_every_estimator_has_value_stderr_nfe_info():
    sde = VPSDE()
    gm = GaussianMixture([1.0], torch.zeros(1, 2, dtype=F64), torch.ones(1, 2, dtype=F64))
    x = gm.sample(6, generator=torch.Generator().manual_seed(0))
    ll = log_likelihood(sde, gm.score_fn(sde), x, rtol=1e-4, atol=1e-4)
    assert ll.value is ll.logp and ll.stderr is None and ll.nfe > 0 and ll.info["z"] is ll.z
    torch.testing.assert_close(ll.value, gm.log_prob(x), rtol=0, atol=1e-2)     # N(0, I) stays N(0, I)
    el = elbo(sde, gm.score_fn(sde), x, n_t=8, generator=torch.Generator().manual_seed(1))
    assert el.value is el.elbo and el.stderr.shape == (6,) and el.nfe > 0 and el.info["options"]["n_t"] == 8
    ref = gm.sample(200, generator=torch.Generator().manual_seed(2))
    d = dlogp(gm.sample(200, generator=torch.Generator().manual_seed(3)), gm.log_prob, ref)
    assert d.stderr == d.se > 0 and d.nfe == 0 and d.info == {}
    k = kernel_inception_distance(ref, ref + 0.5, subset_size=50, generator=torch.Generator().manual_seed(4))
    value, se = k
    assert (k.value, k.stderr) == (value, se) and value > 3 * se
    xs, info = sample(sde, gm.score_fn(sde), (4, 2), "ddim", steps=5, generator=torch.Generator())
    assert xs.shape == (4, 2) and info.nfe == 5
