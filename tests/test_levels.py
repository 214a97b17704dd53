"""Discrete data know their levels: digits 17, 8-bit 256, declared levels; dequantisation within
the data's own bins; bits/dim of the discrete data against a distribution of known entropy."""
import math

import numpy as np
import pytest
import torch

import configs.default as default
from solvers import bits_per_dim
from training.data import get_dataset
from training.levels import dequantize, levels_to_model, model_to_levels
from training.readers import load_digits_levels


def cfg(**data):
    c = default.get_config()
    for k, v in data.items():
        c.data[k] = v
    return c


def test_digits_have_17_levels_by_default():
    k = load_digits_levels()
    assert k.min() == 0 and k.max() == 16 and len(np.unique(k)) == 17
    ds = get_dataset(cfg())
    assert ds.num_levels == 17 and ds.discrete and ds.is_image
    allx = torch.cat([ds.train, ds.test])
    # bin centres (2k + 1)/17 - 1, and back to the same multiset of levels
    assert sorted(model_to_levels(allx, 17).flatten().tolist()) == sorted(k.flatten().tolist())
    torch.testing.assert_close(levels_to_model(model_to_levels(allx, 17), 17), allx)
    # the 8-bit convention is still there, on the same split
    ds8 = get_dataset(cfg(num_levels=256))
    assert ds8.num_levels == 256
    assert torch.equal(model_to_levels(ds8.test, 256), torch.as_tensor(
        np.round(model_to_levels(ds.test, 17).numpy() * 255 / 16)).long())
    assert get_dataset(cfg(num_levels=17)).num_levels == 17
    with pytest.raises(ValueError, match="num_levels"):
        get_dataset(cfg(num_levels=5))


@pytest.mark.parametrize("L", [2, 17, 256])
def test_dequantize_uniform_within_own_bins(L):
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, L, (20000,), generator=g)
    y = dequantize(levels_to_model(k, L).double(), g, num_levels=L)
    assert torch.equal(model_to_levels(y, L), k)           # stays in its bin
    frac = (y + 1) * L / 2 - k                             # position inside the bin: U[0, 1)
    assert abs(frac.mean().item() - 0.5) < 0.01 and abs(frac.var().item() - 1 / 12) < 0.003
    assert frac.min() >= 0 and frac.max() < 1


def test_declared_levels_for_arrays_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    k = rng.integers(0, 5, size=(40, 1, 4, 4))
    u = np.round(k * 255 / 4).astype(np.uint8)
    np.save(tmp_path / "a.npy", u)
    c = cfg(dataset="array", path=str(tmp_path / "a.npy"), image_size=4, num_levels=5)
    ds = get_dataset(c)
    assert ds.num_levels == 5
    got = torch.cat([model_to_levels(ds.train, 5), model_to_levels(ds.test, 5)])
    assert sorted(got.flatten().tolist()) == sorted(k.flatten().tolist())
    assert get_dataset(cfg(dataset="array", path=str(tmp_path / "a.npy"), image_size=4)).num_levels == 256
    u[0, 0, 0, 0] = 7                                      # off the 5-level grid
    np.save(tmp_path / "b.npy", u)
    with pytest.raises(ValueError, match="value 7 is not one of the 5 levels"):
        get_dataset(cfg(dataset="array", path=str(tmp_path / "b.npy"), image_size=4, num_levels=5))
    np.save(tmp_path / "f.npy", rng.normal(size=(40, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        get_dataset(cfg(dataset="array", path=str(tmp_path / "f.npy"), dim=3, num_levels=5))
    with pytest.raises(ValueError, match="continuous"):
        get_dataset(cfg(dataset="moons", num_levels=17))
    with pytest.raises(ValueError, match="num_levels"):
        get_dataset(cfg(num_levels=1))
    with pytest.raises(ValueError, match="num_levels"):
        dequantize(torch.zeros(2, 2), num_levels=1)


@pytest.mark.parametrize("L,data_range", [(17, "[-1,1]"), (256, "[-1,1]"), (5, "[0,1]"), (17, (-3.0, 2.0))])
def test_bits_per_dim_of_a_discrete_distribution_of_known_entropy(L, data_range):
    """Independent categorical levels P(k) per dimension. Its dequantised density p_x is constant on
    every bin, p_x(x) = prod_j P(k_j) / w with w = (hi - lo) / L, so bits_per_dim must give exactly
    -log2 P(k) / D for each sample, and its mean the entropy H(P) in bits per dimension."""
    g = torch.Generator().manual_seed(1)
    D, n = 6, 40000
    P = torch.distributions.Dirichlet(torch.ones(L, dtype=torch.float64)).sample()
    H = -(P * P.log2()).sum().item()
    k = torch.multinomial(P, n * D, replacement=True, generator=g).reshape(n, D)
    lo, hi = (-1.0, 1.0) if data_range == "[-1,1]" else (0.0, 1.0) if data_range == "[0,1]" else data_range
    w = (hi - lo) / L
    x = lo + (k + torch.rand(n, D, generator=g, dtype=torch.float64)) * w      # dequantised, scaled
    kx = torch.floor((x - lo) / w).long()
    assert torch.equal(kx, k)
    logp_x = (P[kx].log() - math.log(w)).sum(1)                                  # piecewise-constant density
    bpd = bits_per_dim(logp_x, x.shape, data_range=data_range, num_levels=L)
    torch.testing.assert_close(bpd, -P[k].log2().sum(1) / D)
    assert bpd.mean().item() == pytest.approx(H, abs=4 * bpd.std().item() / math.sqrt(n) + 1e-12)
    # a different level count gives a different (wrong) number: the offset is log2(L / (hi - lo))
    wrong = bits_per_dim(logp_x, x.shape, data_range=data_range, num_levels=2 * L)
    torch.testing.assert_close(wrong - bpd, torch.ones_like(bpd))


def test_bits_per_dim_refuses_a_batch_mismatch():
    with pytest.raises(ValueError, match="3 values.*batch size 4"):
        bits_per_dim(torch.zeros(3), (4, 1, 8, 8))
    with pytest.raises(ValueError, match=r"logp must be a tensor \[B\]"):
        bits_per_dim(torch.zeros(3, 1), (3, 8))
    with pytest.raises(ValueError, match="num_levels"):
        bits_per_dim(torch.zeros(3), (3, 8), num_levels=1)
    assert bits_per_dim(torch.zeros(2), (2, 4), num_levels=17)[0].item() == pytest.approx(math.log2(17 / 2))
