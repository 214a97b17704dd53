"""Data loaders: toy sets, mixtures, digits, idx files, folders, arrays, bad inputs, batches."""
import gzip
import struct

import numpy as np
import pytest
import torch

import configs.default as default
from training.batches import BatchSampler
from training.data import get_dataset
from training.levels import dequantize, model_to_uint8, uint8_to_model
from training.readers import load_digits_uint8, read_idx
from training.toy import toy_2d


def cfg(**data):
    c = default.get_config()
    for k, v in data.items():
        c.data[k] = v
    return c


@pytest.mark.parametrize("name", ["moons", "8gaussians", "checkerboard", "swissroll"])
def test_toy_sets(name):
    ds = get_dataset(cfg(dataset=name, dim=2, num_train=500, num_test=100))
    assert ds.train.shape == (500, 2) and ds.test.shape == (100, 2) and not ds.is_image
    assert torch.isfinite(ds.train).all() and ds.train.abs().max() < 6
    again = get_dataset(cfg(dataset=name, dim=2, num_train=500, num_test=100))
    assert torch.equal(ds.train, again.train)   # fixed by split_seed


def test_toy_set_geometry():
    g = torch.Generator().manual_seed(0)
    x = toy_2d("checkerboard", 4000, g)
    cells = (torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2
    assert (cells == 0).all()                   # only the "black" squares
    x = toy_2d("8gaussians", 4000, g, noise=0.0)
    assert torch.allclose(x.norm(dim=1), torch.full((4000,), 2.0), atol=1e-5)
    assert len(torch.unique(torch.round(torch.atan2(x[:, 1], x[:, 0]) * 100))) == 8


def test_mixture_from_config():
    c = cfg(dataset="mixture", dim=2, num_train=20000, num_test=10)
    c.data.mixture.weights = (0.25, 0.75)
    c.data.mixture.means = ((-3.0, 0.0), (3.0, 1.0))
    c.data.mixture.stds = (0.5, 0.2)
    x = get_dataset(c).train
    left = x[:, 0] < 0
    assert abs(left.float().mean().item() - 0.25) < 0.02
    assert abs(x[~left, 1].std().item() - 0.2) < 0.01
    c.data.mixture.stds = ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="stds"):
        get_dataset(c)


def test_digits_scaling_and_split():
    u = load_digits_uint8()
    assert u.shape == (1797, 1, 8, 8) and u.dtype == np.uint8 and u.max() == 255 and u.min() == 0
    ds = get_dataset(cfg(num_levels=256))      # the 8-bit convention; the default (17 levels): test_levels.py
    assert ds.train.shape[1:] == (1, 8, 8) and ds.train.shape[0] + ds.test.shape[0] == 1797
    assert ds.test.shape[0] == round(1797 * 0.2) and ds.eight_bit and ds.is_image and ds.num_levels == 256
    assert ds.train.min() > -1 and ds.train.max() < 1
    # round trip to the 8-bit grid, and the split is fixed by the seed
    allx = torch.cat([ds.train, ds.test])
    assert sorted(model_to_uint8(allx).flatten().tolist()) == sorted(u.flatten().tolist())
    assert torch.equal(get_dataset(cfg(num_levels=256)).test, ds.test)
    assert not torch.equal(get_dataset(cfg(split_seed=1, num_levels=256)).test, ds.test)


def test_dequantize_stays_in_bin(gen):
    u = torch.randint(0, 256, (1000,), generator=gen)
    x = uint8_to_model(u)
    y = dequantize(x, gen)
    assert torch.equal(model_to_uint8(y), u.to(torch.uint8))
    assert abs(((y + 1) * 128 - u).mean().item() - 0.5) < 0.03   # U[0,1) offsets


def _write_idx(path, arr, gz=False):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_fashion_mnist_idx(tmp_path):
    rng = np.random.default_rng(0)
    tr, te = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", tr, gz=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", te)
    ds = get_dataset(cfg(dataset="fashion_mnist", path=str(tmp_path), image_size=28))
    assert ds.train.shape == (5, 1, 28, 28) and ds.test.shape == (3, 1, 28, 28)
    assert np.array_equal(model_to_uint8(ds.train[:, 0]).numpy(), tr)
    # a truncated file is refused with its name
    raw = open(tmp_path / "t10k-images-idx3-ubyte", "rb").read()
    open(tmp_path / "t10k-images-idx3-ubyte", "wb").write(raw[:-10])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*header says shape"):
        get_dataset(cfg(dataset="fashion_mnist", path=str(tmp_path), image_size=28))
    with pytest.raises(ValueError, match="not found"):
        get_dataset(cfg(dataset="fashion_mnist", path=str(tmp_path / "nope"), image_size=28))
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01abcd")
    with pytest.raises(ValueError, match="not an unsigned-byte idx"):
        read_idx(str(tmp_path / "bad"))


def test_image_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    ds = get_dataset(cfg(dataset="folder", path=str(tmp_path), test_fraction=0.5))
    got = model_to_uint8(torch.cat([ds.train, ds.test]))[:, 0].numpy()
    assert sorted(map(bytes, got)) == sorted(map(bytes, imgs))
    # mixed sizes: the odd file is named
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "z_odd.png")
    with pytest.raises(ValueError, match=r"z_odd\.png.*9x9.*0\.png.*8x8"):
        get_dataset(cfg(dataset="folder", path=str(tmp_path)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no PNG/JPEG"):
        get_dataset(cfg(dataset="folder", path=str(empty)))
    # RGB into a 1-channel config works (converted), but a 3-channel config must match the shape
    with pytest.raises(ValueError, match=r"shape \(3, 8, 8\).*image_size=7, data.num_channels=3"):
        (tmp_path / "z_odd.png").unlink()
        get_dataset(cfg(dataset="folder", path=str(tmp_path), num_channels=3, image_size=7))


def test_arrays(tmp_path):
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(50, 3)).astype(np.float32)
    np.save(tmp_path / "v.npy", vec)
    ds = get_dataset(cfg(dataset="array", path=str(tmp_path / "v.npy"), dim=3))
    assert not ds.is_image and not ds.eight_bit and ds.train.shape == (40, 3)
    imgs = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)      # NHWC
    np.savez(tmp_path / "i.npz", x=imgs)
    ds = get_dataset(cfg(dataset="array", path=str(tmp_path / "i.npz"), num_channels=3))
    assert ds.is_image and ds.eight_bit and ds.train.shape[1:] == (3, 8, 8)
    # wrong rank, NaN, wrong dim: refused with the file / shape named
    np.save(tmp_path / "r5.npy", np.zeros((2, 1, 1, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"r5\.npy.*\(2, 1, 1, 1, 1\).*rank 5"):
        get_dataset(cfg(dataset="array", path=str(tmp_path / "r5.npy")))
    bad = vec.copy()
    bad[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"nan\.npy.*NaN.*example 7"):
        get_dataset(cfg(dataset="array", path=str(tmp_path / "nan.npy"), dim=3))
    with pytest.raises(ValueError, match=r"dimension 3 but the config says data.dim=2"):
        get_dataset(cfg(dataset="array", path=str(tmp_path / "v.npy"), dim=2))
    with pytest.raises(ValueError, match="does not exist"):
        get_dataset(cfg(dataset="array", path=str(tmp_path / "missing.npy")))


def test_unknown_dataset_lists_valid():
    with pytest.raises(ValueError, match=r"config.data.dataset must be one of .*'digits'.*got 'mnist'"):
        get_dataset(cfg(dataset="mnist"))


def test_batch_sampler_epochs_shards_and_state():
    s = BatchSampler(10, 4, torch.Generator().manual_seed(0))
    first = torch.cat([s.next() for _ in range(5)])     # 20 indices = two full epochs
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))
    # state round trip continues identically
    s2 = BatchSampler(10, 4, torch.Generator().manual_seed(123))
    s2.load_state_dict(s.state_dict())
    assert all(torch.equal(s.next(), s2.next()) for _ in range(7))
    # two ranks with the same seed see disjoint halves of every epoch
    r0 = BatchSampler(10, 5, torch.Generator().manual_seed(3), rank=0, world_size=2)
    r1 = BatchSampler(10, 5, torch.Generator().manual_seed(3), rank=1, world_size=2)
    a, b = r0.next(), r1.next()
    assert sorted(torch.cat([a, b]).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="batch size"):
        BatchSampler(10, 0, torch.Generator())
