"""Datasets: generated 2-D toy sets, Gaussian mixtures, sklearn digits, Fashion-MNIST
(idx files), and a user's folder of PNG/JPEG images or .npz/.npy array.

Everything is loaded into memory as float32 tensors in *model space*:

- discrete images are `[N, C, H, W]` with `L` levels per value (`Dataset.num_levels`:
  digits 17, 8-bit images 256); level k in {0..L-1} is the centre of its bin in [-1, 1),
      x = (2k + 1) / L - 1          (8-bit: (u + 1/2) / 128 - 1).
  For likelihoods, `dequantize` replaces the bin centre by a uniform draw in the bin,
      x = (2 (k + U)) / L - 1,  U ~ U[0, 1),
  so a density on [-1, 1)^D is a valid dequantised model of the discrete data and
  bits/dim = -log p(x) / (D ln 2) + log2(L / 2) (each bin has width 2/L;
  `solvers.bits_per_dim(..., num_levels=L)`). `data.num_levels` declares the levels
  of folders and arrays (0: 256 for uint8 data), and for digits it picks the
  convention: 0 or 17 (the data's own levels) or 256 (values mapped to 8-bit, the
  convention of image papers).
- vector data (toy sets, mixtures, float arrays) is `[N, D]`, used as is.

`get_dataset(config)` reads `config.data.dataset` and returns a `Dataset` with a fixed
train/test split (fixed by `config.data.split_seed`). `BatchSampler` draws shuffled
minibatches with an explicit torch.Generator, optionally sharded across ranks, and
has a state_dict so a resumed run sees exactly the same batches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from .levels import declared_levels, levels_of_uint8, levels_to_model, model_to_levels  # noqa: F401 (re-exported)
from .readers import (FASHION_MNIST_DIR, IMAGE_SUFFIXES, load_array, load_digits_levels, load_digits_uint8,  # noqa: F401
                      load_fashion_mnist, load_fashion_mnist_labels, load_image_folder, load_labelled_image_folder,
                      read_idx)
from models.analytic import GaussianMixture
from configs.errors import InputError

Tensor = torch.Tensor

TOY_SETS = ("moons", "8gaussians", "checkerboard", "swissroll")
DATASETS = TOY_SETS + ("mixture", "digits", "fashion_mnist", "folder", "array")


@dataclass
class Dataset:
    name: str
    train: Tensor           # [N_train, *shape], float32, model space
    test: Tensor            # [N_test, *shape]
    is_image: bool          # [C, H, W] images (else [D] vectors)
    eight_bit: bool         # values are bin centres of discrete data: dequantise for likelihoods
    num_levels: Optional[int] = None   # levels per value of discrete data (None with eight_bit: 256)
    # class labels (issue 10): int64 [N_train] / [N_test] in [0, num_classes), or None if the set has none
    train_labels: Optional[Tensor] = None
    test_labels: Optional[Tensor] = None
    num_classes: int = 0
    class_names: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        if self.eight_bit and self.num_levels is None:
            self.num_levels = 256
        if not self.eight_bit:
            self.num_levels = None

    @property
    def discrete(self) -> bool:
        """Values are bin centres of `num_levels` levels (dequantise for likelihoods)."""
        return self.num_levels is not None

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.train.shape[1:])


# ---- 8-bit <-> model space ----------------------------------------------------------------

def uint8_to_model(u) -> Tensor:
    """u in {0..255} (any integer array) -> (u + 1/2) / 128 - 1, float32."""
    u = u.detach().clone() if torch.is_tensor(u) else torch.from_numpy(np.array(u))
    u = u.to(torch.float32)
    return (u + 0.5) / 128.0 - 1.0


def model_to_uint8(x: Tensor) -> Tensor:
    """Inverse of uint8_to_model (bin index of x): floor((x + 1) 128), clamped to 0..255."""
    return torch.clamp(torch.floor((x.detach().float() + 1.0) * 128.0), 0, 255).to(torch.uint8)


def dequantize(x: Tensor, generator: Optional[torch.Generator] = None, num_levels: int = 256) -> Tensor:
    """Uniform dequantisation within the data's own bins: a bin centre x of L levels becomes
    x - 1/L + 2U/L, U ~ U[0, 1) (uniform over the bin of width 2/L; L = 256: x - 1/256 + U/128)."""
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
        raise InputError(f"num_levels must be an int >= 2, got {num_levels!r}")
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + (2.0 * u - 1.0) / num_levels


# ---- toy sets and mixtures --------------------------------------------------------------------

def toy_2d(name: str, n: int, generator: torch.Generator, noise: Optional[float] = None) -> Tensor:
    """n points of a 2-D toy set, roughly centred with O(1) spread, `[n, 2]`."""
    g = generator
    if name == "moons":
        noise = 0.05 if noise is None else noise
        theta = math.pi * torch.rand(n, generator=g)
        upper = torch.rand(n, generator=g) < 0.5
        x = torch.where(upper, torch.cos(theta), 1.0 - torch.cos(theta))
        y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
        pts = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5
    elif name == "8gaussians":
        noise = 0.1 if noise is None else noise
        k = torch.randint(0, 8, (n,), generator=g).float()
        angle = k * (2 * math.pi / 8)
        pts = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    elif name == "checkerboard":
        noise = 0.0 if noise is None else noise
        x1 = 4.0 * torch.rand(n, generator=g) - 2.0
        col = torch.floor(x1)
        # rows r in {-2..1} with (col + r) even: r = -2 + 2k + (col mod 2)
        r = -2.0 + 2.0 * torch.randint(0, 2, (n,), generator=g).float() + torch.remainder(col, 2)
        pts = torch.stack([x1, r + torch.rand(n, generator=g)], dim=1)
    elif name == "swissroll":
        noise = 0.1 if noise is None else noise
        theta = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
        pts = torch.stack([theta * torch.cos(theta), theta * torch.sin(theta)], dim=1) / 5.0
    else:
        raise InputError(f"unknown toy data set {name!r}; expected one of {list(TOY_SETS)}")
    if noise:
        pts = pts + noise * torch.randn(n, 2, generator=g)
    return pts


def mixture_distribution(weights, means, stds):
    """The `models.GaussianMixture` sum_k w_k N(mu_k, diag(std_k^2)) of a `data.mixture` config block;
    stds are `[K]` or `[K, D]`. Its `score_fn(sde)` is the exact score of the data under any SDE."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    mu = torch.as_tensor(np.asarray(means, dtype=np.float64))
    sd = torch.as_tensor(np.asarray(stds, dtype=np.float64))
    if mu.dim() != 2 or w.shape != (mu.shape[0],):
        raise InputError(f"mixture needs means [K, D] and weights [K]; got means {tuple(mu.shape)}, "
                         f"weights {tuple(w.shape)}")
    if sd.dim() == 1:
        sd = sd[:, None].expand_as(mu)
    if sd.shape != mu.shape:
        raise InputError(f"mixture stds must be [K] or [K, D] = {tuple(mu.shape)}, got {tuple(sd.shape)}")
    if (w < 0).any() or w.sum() <= 0 or not torch.isfinite(mu).all() or (sd < 0).any():
        raise InputError("mixture weights must be >= 0 with a positive sum, means finite, stds >= 0")
    return GaussianMixture(w, mu, sd ** 2, dtype=torch.float64)


def mixture_samples(weights, means, stds, n: int, generator: torch.Generator) -> Tensor:
    """n draws from sum_k w_k N(mu_k, diag(std_k^2)); stds are `[K]` or `[K, D]`. `[n, D]` float32."""
    return mixture_distribution(weights, means, stds).sample(n, generator=generator).float()


# ---- splitting and the dataset factory ----------------------------------------------------------

def split(x: Tensor, test_fraction: float, seed: int) -> Tuple[Tensor, Tensor]:
    """A random train/test split fixed by `seed` (same seed, same split)."""
    if not (0.0 < test_fraction < 1.0):
        raise InputError(f"data.test_fraction must lie in (0, 1), got {test_fraction!r}")
    n = x.shape[0]
    n_test = max(1, int(round(n * test_fraction)))
    if n_test >= n:
        raise InputError(f"cannot split {n} examples with test_fraction={test_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return x[perm[n_test:]], x[perm[:n_test]]


def get_dataset(config) -> Dataset:
    """Load `config.data.dataset` (one of DATASETS) with its fixed train/test split."""
    d = config.data
    name = d.get("dataset", None)
    seed = int(d.get("split_seed", 0))
    tf = float(d.get("test_fraction", 0.2))
    levels = declared_levels(d)
    if name in TOY_SETS or name == "mixture":
        if levels is not None:
            raise InputError(f"data set {name!r} is continuous; data.num_levels must be 0, got {levels}")
        n_train, n_test = int(d.get("num_train", 20000)), int(d.get("num_test", 5000))
        if n_train < 1 or n_test < 1:
            raise InputError(f"data.num_train and data.num_test must be >= 1, got {n_train}, {n_test}")
        g = torch.Generator().manual_seed(seed)
        if name == "mixture":    # labels: the component each point was drawn from
            mx = d.mixture
            gm = mixture_distribution(mx.weights, mx.means, mx.stds)
            x, y = gm.sample(n_train + n_test, generator=g, return_labels=True)
            x = x.float()
            ds = Dataset(name, x[:n_train], x[n_train:], is_image=False, eight_bit=False,
                         train_labels=y[:n_train], test_labels=y[n_train:], num_classes=gm.K)
        else:
            x = toy_2d(name, n_train + n_test, g, d.get("noise", None))
            ds = Dataset(name, x[:n_train], x[n_train:], is_image=False, eight_bit=False)
    elif name == "digits":
        if levels not in (None, 17, 256):
            raise InputError(f"digits have 17 levels (0..16); data.num_levels must be 0 or 17 (their own levels) "
                             f"or 256 (mapped to 8-bit), got {levels}")
        if levels == 256:
            x, L = uint8_to_model(load_digits_uint8()), 256
        else:
            x, L = levels_to_model(load_digits_levels(), 17), 17
        from sklearn.datasets import load_digits
        y_train, y_test = split(torch.from_numpy(load_digits().target.astype(np.int64)), tf, seed)
        ds = Dataset(name, *split(x, tf, seed), is_image=True, eight_bit=True, num_levels=L,
                     train_labels=y_train, test_labels=y_test, num_classes=10)
    elif name == "fashion_mnist":
        if levels not in (None, 256):
            raise InputError(f"Fashion-MNIST is 8-bit; data.num_levels must be 0 or 256, got {levels}")
        directory = d.get("path", None) or FASHION_MNIST_DIR
        tr, te = load_fashion_mnist(directory)
        labels = load_fashion_mnist_labels(directory)
        ds = Dataset(name, uint8_to_model(tr), uint8_to_model(te), is_image=True, eight_bit=True,
                     train_labels=labels[0] if labels else None, test_labels=labels[1] if labels else None,
                     num_classes=10 if labels else 0)
    elif name == "folder":
        if not d.get("path", None):
            raise InputError("data.dataset='folder' needs data.path (a folder of PNG/JPEG images)")
        labelled = load_labelled_image_folder(d.path, int(d.get("num_channels", 1)))
        if labelled is None:
            a = load_image_folder(d.path, int(d.get("num_channels", 1)))
            ds = Dataset(name, *split(levels_of_uint8(a, levels, d.path), tf, seed), is_image=True,
                         eight_bit=True, num_levels=levels or 256)
        else:   # class subfolders: labels by subfolder, classes in sorted name order
            a, y, classes = labelled
            y_train, y_test = split(torch.from_numpy(y), tf, seed)
            ds = Dataset(name, *split(levels_of_uint8(a, levels, d.path), tf, seed), is_image=True,
                         eight_bit=True, num_levels=levels or 256, train_labels=y_train, test_labels=y_test,
                         num_classes=len(classes), class_names=classes)
    elif name == "array":
        if not d.get("path", None):
            raise InputError("data.dataset='array' needs data.path (an .npy or .npz file)")
        a, is_image = load_array(d.path, d.get("key", None))
        if a.dtype == np.uint8:
            x, L = levels_of_uint8(a, levels, d.path), levels or 256
        elif levels is not None:
            raise InputError(f"{d.path!r}: data.num_levels={levels} is for uint8 data, but the array holds "
                             f"{a.dtype} values (used as continuous data)")
        else:
            x, L = torch.as_tensor(a).float(), None
        ds = Dataset(name, *split(x, tf, seed), is_image=is_image, eight_bit=L is not None, num_levels=L)
    else:
        raise InputError(f"unknown data set {name!r}; expected one of {list(DATASETS)}")
    check_config_matches(ds, config)
    return ds


def check_config_matches(ds: Dataset, config) -> None:
    """The network is built from config.data; refuse data whose shape disagrees with it."""
    d = config.data
    if ds.is_image:
        C, H, W = ds.shape
        if H != W:
            raise InputError(f"data set {ds.name!r} has non-square images {H}x{W}; the U-Net needs square images")
        if (d.get("image_size", None), d.get("num_channels", None)) != (H, C):
            raise InputError(f"data set {ds.name!r} has images of shape {ds.shape} but the config says "
                             f"data.image_size={d.get('image_size', None)}, "
                             f"data.num_channels={d.get('num_channels', None)}")
    else:
        if d.get("dim", None) != ds.shape[0]:
            raise InputError(f"data set {ds.name!r} has vectors of dimension {ds.shape[0]} but the config says "
                             f"data.dim={d.get('dim', None)}")


class BatchSampler:
    """Shuffled minibatch indices from an explicit generator, sharded over ranks.

    Each epoch draws a permutation of range(n) from `generator` (identical on every rank
    when the generators share a seed) and rank r takes perm[r::world_size]. Indices are
    queued across epoch boundaries, so any batch size works. `state_dict` holds the queue
    and the generator state: a restored sampler continues with exactly the same batches.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1):
        if batch_size <= 0:
            raise InputError(f"batch size must be > 0, got {batch_size}")
        if n < world_size:
            raise InputError(f"{n} training examples cannot be sharded over {world_size} ranks")
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.rank, self.world_size = rank, world_size
        self.queue = torch.empty(0, dtype=torch.long)

    def next(self) -> Tensor:
        while self.queue.numel() < self.batch_size:
            perm = torch.randperm(self.n, generator=self.generator)[self.rank::self.world_size]
            self.queue = torch.cat([self.queue, perm])
        idx, self.queue = self.queue[:self.batch_size], self.queue[self.batch_size:]
        return idx

    def state_dict(self):
        return {"queue": self.queue.clone(), "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.queue = state["queue"].clone()
        self.generator.set_state(state["generator"])
