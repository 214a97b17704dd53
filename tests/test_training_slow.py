"""Slow: a small MLP trained on a 2-D toy set samples the data distribution.

The sliced W1 between 2,000 samples and 2,000 held-out data points is compared with the
data's own floor: the mean sliced W1 between the same 2,000 points and four further
independent 2,000-point draws of the data (pure finite-sample noise, about 0.03 here).
Samples must come within 2x the floor. The criterion can fail: data stretched by 10%
scores about 3x the floor, and the untrained (zero) score is orders of magnitude off."""
import pytest
import torch

import configs.toy_vp_mlp as toy
import models
import sde_lib
import solvers
from solvers.metrics import sliced_wasserstein
from training import get_dataset, train


def _sw(x, y):
    return sliced_wasserstein(x, y, n_projections=512, generator=torch.Generator().manual_seed(1))


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["vpsde", "vesde"])
def test_mlp_on_moons_reaches_data_floor(tmp_path, sde_name):
    c = toy.get_config()
    c.sde.name = sde_name
    c.sde.sigma_max = 5.0
    c.training.progress = False
    c.training.n_iters = 2500
    c.data.num_test = 10000
    ds = get_dataset(c)
    ref = ds.test[:2000]
    floor = sum(_sw(ds.test[2000 * k:2000 * (k + 1)], ref) for k in range(1, 5)) / 4
    assert _sw(1.1 * ds.test[2000:4000], ref) > 2 * floor      # the criterion has teeth

    state = train(c, str(tmp_path), dataset=ds)
    sde = sde_lib.get_sde(c)
    score_fn = models.get_score_fn(sde, state.ema.model)
    gen = torch.Generator().manual_seed(0)
    x, info = solvers.sample(sde, score_fn, (2000, 2), sampler="euler_maruyama", steps=500, generator=gen,
                             denoise=True)
    sw = _sw(x, ref)
    zero = lambda xx, t: torch.zeros_like(xx)
    x0, _ = solvers.sample(sde, zero, (2000, 2), sampler="euler_maruyama", steps=100, generator=gen)
    sw_zero = _sw(x0, ref)
    print(f"{sde_name}: sliced W1 samples {sw:.4f}, data floor {floor:.4f}, untrained {sw_zero:.4f}")
    assert sw_zero > 10 * floor
    assert sw < 2 * floor, (sw, floor)
