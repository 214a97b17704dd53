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

import gzip
import math
import os
import struct
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from .levels import declared_levels, levels_of_uint8, levels_to_model, model_to_levels  # noqa: F401 (re-exported)

Tensor = torch.Tensor

TOY_SETS = ("moons", "8gaussians", "checkerboard", "swissroll")
DATASETS = TOY_SETS + ("mixture", "digits", "fashion_mnist", "folder", "array")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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
        raise ValueError(f"num_levels must be an int >= 2, got {num_levels!r}")
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
        raise ValueError(f"unknown toy data set {name!r}; expected one of {list(TOY_SETS)}")
    if noise:
        pts = pts + noise * torch.randn(n, 2, generator=g)
    return pts


def mixture_distribution(weights, means, stds):
    """The `models.GaussianMixture` sum_k w_k N(mu_k, diag(std_k^2)) of a `data.mixture` config block;
    stds are `[K]` or `[K, D]`. Its `score_fn(sde)` is the exact score of the data under any SDE."""
    from models.analytic import GaussianMixture
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    mu = torch.as_tensor(np.asarray(means, dtype=np.float64))
    sd = torch.as_tensor(np.asarray(stds, dtype=np.float64))
    if mu.dim() != 2 or w.shape != (mu.shape[0],):
        raise ValueError(f"mixture needs means [K, D] and weights [K]; got means {tuple(mu.shape)}, "
                         f"weights {tuple(w.shape)}")
    if sd.dim() == 1:
        sd = sd[:, None].expand_as(mu)
    if sd.shape != mu.shape:
        raise ValueError(f"mixture stds must be [K] or [K, D] = {tuple(mu.shape)}, got {tuple(sd.shape)}")
    if (w < 0).any() or w.sum() <= 0 or not torch.isfinite(mu).all() or (sd < 0).any():
        raise ValueError("mixture weights must be >= 0 with a positive sum, means finite, stds >= 0")
    return GaussianMixture(w, mu, sd ** 2, dtype=torch.float64)


def mixture_samples(weights, means, stds, n: int, generator: torch.Generator) -> Tensor:
    """n draws from sum_k w_k N(mu_k, diag(std_k^2)); stds are `[K]` or `[K, D]`. `[n, D]` float32."""
    return mixture_distribution(weights, means, stds).sample(n, generator=generator).float()


# ---- image sources ------------------------------------------------------------------------------

def load_digits_levels() -> np.ndarray:
    """sklearn's bundled 8x8 digits, their own 17 levels 0..16 as int64 `[1797, 1, 8, 8]`."""
    from sklearn.datasets import load_digits
    return np.round(load_digits().images).astype(np.int64)[:, None]


def load_digits_uint8() -> np.ndarray:
    """sklearn's bundled 8x8 digits (values 0..16) mapped to 8-bit: round(v * 255 / 16). `[1797, 1, 8, 8]`."""
    from sklearn.datasets import load_digits
    v = load_digits().images
    return np.round(v * (255.0 / 16.0)).astype(np.uint8)[:, None]


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (optionally .gz): magic 0x0000 08 <ndim>, big-endian int32 dims, uint8 data."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: not an idx file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim < 1:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic bytes {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = int(np.prod(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != expected:
        raise ValueError(f"{path}: header says shape {dims} ({expected} bytes) but the file holds {data.size}")
    return data.reshape(dims)


def _find(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    raise ValueError(f"Fashion-MNIST file {stem}[.gz] not found in {directory!r} (install the Debian "
                     f"package dataset-fashion-mnist or set config.data.path; nothing is downloaded)")


def load_fashion_mnist(directory: str) -> Tuple[np.ndarray, np.ndarray]:
    """(train, test) uint8 arrays `[N, 1, 28, 28]` from the standard idx files in `directory`."""
    out = []
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        p = _find(directory, stem)
        a = read_idx(p)
        if a.ndim != 3:
            raise ValueError(f"{p}: expected images [N, H, W], got shape {a.shape}")
        out.append(a[:, None])
    return out[0], out[1]


def load_image_folder(directory: str, num_channels: int) -> np.ndarray:
    """All PNG/JPEG files of a folder (sorted by name) as uint8 `[N, C, H, W]`; sizes must agree."""
    from PIL import Image
    if not os.path.isdir(directory):
        raise ValueError(f"image folder {directory!r} does not exist or is not a directory")
    files = sorted(f for f in os.listdir(directory) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise ValueError(f"image folder {directory!r} holds no PNG/JPEG files (class subfolders: "
                         f"see load_labelled_image_folder)")
    if num_channels not in (1, 3):
        raise ValueError(f"image folders need data.num_channels 1 (grey) or 3 (RGB), got {num_channels}")
    mode = "L" if num_channels == 1 else "RGB"
    arrays, first = [], None
    for f in files:
        path = os.path.join(directory, f)
        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert(mode), dtype=np.uint8)
        except Exception as e:  # PIL raises many types for a bad file
            raise ValueError(f"cannot read image {path!r}: {e}") from None
        if first is None:
            first = (f, a.shape)
        elif a.shape != first[1]:
            raise ValueError(f"image {path!r} has size {a.shape[1]}x{a.shape[0]} but {first[0]!r} has "
                             f"{first[1][1]}x{first[1][0]}; all images in a folder must have one size")
        arrays.append(a)
    x = np.stack(arrays)
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


def load_array(path: str, key: Optional[str] = None) -> Tuple[np.ndarray, bool]:
    """An .npy/.npz array: `[N, D]` vectors, `[N, H, W]` / `[N, C, H, W]` / `[N, H, W, C]` images.

    uint8 arrays are 8-bit data; float arrays are used as they are. Returns (array, is_image)
    with images as `[N, C, H, W]`.
    """
    if not os.path.isfile(path):
        raise ValueError(f"data file {path!r} does not exist")
    try:
        if path.endswith(".npz"):
            with np.load(path) as z:
                keys = list(z.keys())
                if not keys:
                    raise ValueError(f"{path!r} holds no arrays")
                k = key if key else ("x" if "x" in keys else keys[0])
                if k not in keys:
                    raise ValueError(f"{path!r} has no array {k!r}; it holds {keys}")
                a = z[k]
        elif path.endswith(".npy"):
            a = np.load(path)
        else:
            raise ValueError(f"data file {path!r} must end in .npy or .npz")
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"cannot read {path!r}: {e}") from None
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        if np.issubdtype(a.dtype, np.integer):
            a = a.astype(np.float64)
        else:
            raise ValueError(f"{path!r}: unsupported dtype {a.dtype}; expected uint8 or float")
    if a.ndim == 2:
        is_image = False
    elif a.ndim == 3:
        a, is_image = a[:, None], True
    elif a.ndim == 4:
        is_image = True
        if a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3, 4):
            a = a.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{path!r}: array of shape {a.shape} has rank {a.ndim}; expected [N, D], [N, H, W], "
                         f"[N, C, H, W] or [N, H, W, C]")
    if a.shape[0] < 2:
        raise ValueError(f"{path!r}: need at least 2 examples, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        bad = int(np.argwhere(~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1))[0, 0]) \
            if not np.isfinite(a).all() else -1
        raise ValueError(f"{path!r}: array holds NaN or inf values (first in example {bad})")
    return a, is_image


# ---- splitting and the dataset factory ----------------------------------------------------------

def split(x: Tensor, test_fraction: float, seed: int) -> Tuple[Tensor, Tensor]:
    """A random train/test split fixed by `seed` (same seed, same split)."""
    if not (0.0 < test_fraction < 1.0):
        raise ValueError(f"data.test_fraction must lie in (0, 1), got {test_fraction!r}")
    n = x.shape[0]
    n_test = max(1, int(round(n * test_fraction)))
    if n_test >= n:
        raise ValueError(f"cannot split {n} examples with test_fraction={test_fraction}")
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
            raise ValueError(f"data set {name!r} is continuous; data.num_levels must be 0, got {levels}")
        n_train, n_test = int(d.get("num_train", 20000)), int(d.get("num_test", 5000))
        if n_train < 1 or n_test < 1:
            raise ValueError(f"data.num_train and data.num_test must be >= 1, got {n_train}, {n_test}")
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
            raise ValueError(f"digits have 17 levels (0..16); data.num_levels must be 0 or 17 (their own levels) "
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
            raise ValueError(f"Fashion-MNIST is 8-bit; data.num_levels must be 0 or 256, got {levels}")
        directory = d.get("path", None) or FASHION_MNIST_DIR
        from .labels import load_fashion_mnist_labels
        tr, te = load_fashion_mnist(directory)
        labels = load_fashion_mnist_labels(directory)
        ds = Dataset(name, uint8_to_model(tr), uint8_to_model(te), is_image=True, eight_bit=True,
                     train_labels=labels[0] if labels else None, test_labels=labels[1] if labels else None,
                     num_classes=10 if labels else 0)
    elif name == "folder":
        if not d.get("path", None):
            raise ValueError("data.dataset='folder' needs data.path (a folder of PNG/JPEG images)")
        from .labels import load_labelled_image_folder
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
            raise ValueError("data.dataset='array' needs data.path (an .npy or .npz file)")
        a, is_image = load_array(d.path, d.get("key", None))
        if a.dtype == np.uint8:
            x, L = levels_of_uint8(a, levels, d.path), levels or 256
        elif levels is not None:
            raise ValueError(f"{d.path!r}: data.num_levels={levels} is for uint8 data, but the array holds "
                             f"{a.dtype} values (used as continuous data)")
        else:
            x, L = torch.as_tensor(a).float(), None
        ds = Dataset(name, *split(x, tf, seed), is_image=is_image, eight_bit=L is not None, num_levels=L)
    else:
        raise ValueError(f"unknown data set {name!r}; expected one of {list(DATASETS)}")
    check_config_matches(ds, config)
    return ds


def check_config_matches(ds: Dataset, config) -> None:
    """The network is built from config.data; refuse data whose shape disagrees with it."""
    d = config.data
    if ds.is_image:
        C, H, W = ds.shape
        if H != W:
            raise ValueError(f"data set {ds.name!r} has non-square images {H}x{W}; the U-Net needs square images")
        if (d.get("image_size", None), d.get("num_channels", None)) != (H, C):
            raise ValueError(f"data set {ds.name!r} has images of shape {ds.shape} but the config says "
                             f"data.image_size={d.get('image_size', None)}, "
                             f"data.num_channels={d.get('num_channels', None)}")
    else:
        if d.get("dim", None) != ds.shape[0]:
            raise ValueError(f"data set {ds.name!r} has vectors of dimension {ds.shape[0]} but the config says "
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
            raise ValueError(f"batch size must be > 0, got {batch_size}")
        if n < world_size:
            raise ValueError(f"{n} training examples cannot be sharded over {world_size} ranks")
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
