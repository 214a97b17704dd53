"""Slow: a small MLP trained on a 2-D toy set samples the data distribution.

The sliced W1 between 2,000 samples and 2,000 held-out data points is compared with the
data's own floor: the sliced W1 between two independent 2,000-point draws of the data
(finite-sample noise). A model that collapsed to a few modes, blurred the set or put mass
between the moons sits far above the floor."""
import pytest
import torch

import configs.toy_vp_mlp as toy
import models
import sde_lib
import solvers
from solvers.metrics import sliced_wasserstein
from training import get_dataset, train


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["vpsde", "vesde"])
def test_mlp_on_moons_reaches_data_floor(tmp_path, sde_name):
    c = toy.get_config()
    c.sde.name = sde_name
    c.sde.sigma_max = 5.0
    c.training.progress = False
    c.training.n_iters = 2500
    c.data.num_test = 4000
    ds = get_dataset(c)
    state = train(c, str(tmp_path), dataset=ds)
    sde = sde_lib.get_sde(c)
    score_fn = models.get_score_fn(sde, state.ema.model)
    gen = torch.Generator().manual_seed(0)
    x, info = solvers.sample(sde, score_fn, (2000, 2), sampler="euler_maruyama", steps=500, generator=gen,
                             denoise=True)
    g = torch.Generator().manual_seed(1)
    sw = sliced_wasserstein(x, ds.test[:2000], n_projections=512, generator=g)
    g = torch.Generator().manual_seed(1)
    floor = sliced_wasserstein(ds.test[2000:4000], ds.test[:2000], n_projections=512, generator=g)
    # An untrained score (all zeros, i.e. the prior pushed back) is far from the floor.
    zero = lambda xx, t: torch.zeros_like(xx)
    x0, _ = solvers.sample(sde, zero, (2000, 2), sampler="euler_maruyama", steps=100, generator=gen)
    g = torch.Generator().manual_seed(1)
    sw_zero = sliced_wasserstein(x0, ds.test[:2000], n_projections=512, generator=g)
    print(f"{sde_name}: sliced W1 samples {sw:.4f}, data floor {floor:.4f}, untrained {sw_zero:.4f}")
    assert sw_zero > 5 * floor
    assert sw < 2.5 * floor, (sw, floor)
