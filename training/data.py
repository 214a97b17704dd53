"""Data sets: one function per data set behind `register_dataset`, and `get_dataset(config)`.

A data set function takes the `config.data` block and returns a `Dataset`: train and test tensors
in *model space* with a fixed split (`data.split_seed`), their class labels (the one source of
labels) and the number of discrete levels per value (the one source of levels):

- discrete images are `[N, C, H, W]` with `L` levels per value (`Dataset.num_levels`: digits 17,
  8-bit images 256); level k in {0..L-1} is the centre of its bin in [-1, 1),
      x = (2k + 1) / L - 1          (8-bit: (u + 1/2) / 128 - 1),
  and likelihoods dequantise within the bin (`training.levels`: `dequantize`, bits/dim offset);
- vector data (toy sets, mixtures, float arrays) is `[N, D]`, continuous, used as is.

Adding a data set is one function and one registration; `discrete_dataset` / `vector_dataset` do the
levels, the split and the labels::

    @register_dataset("patches", doc="32x32 RGB patches of sklearn's sample images")
    def patches(d):                      # d = config.data
        return discrete_dataset("patches", my_uint8_array_NCHW, d)

The readers of files live in `training.readers`, generated data in `training.toy`, level
conversions in `training.levels`, minibatches in `training.batches`.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from configs.errors import ConfigError, InputError

from .batches import BatchSampler  # noqa: F401 (re-exported)
from .levels import (declared_levels, dequantize, levels_of_uint8, levels_to_model,  # noqa: F401 (re-exported)
                     model_to_levels, model_to_uint8, uint8_to_model)
from .readers import (FASHION_MNIST_DIR, load_array, load_array_labels, load_digits_labels, load_digits_levels,
                      load_digits_uint8, load_fashion_mnist, load_fashion_mnist_labels, load_image_folder,
                      load_labelled_image_folder, load_sample_patches)
from .toy import TOY_SETS, mixture_distribution, mixture_samples, toy_2d  # noqa: F401 (re-exported)

Tensor = torch.Tensor


@dataclass
class Dataset:
    name: str
    train: Tensor           # [N_train, *shape], float32, model space
    test: Tensor            # [N_test, *shape]
    is_image: bool          # [C, H, W] images (else [D] vectors)
    eight_bit: bool         # values are bin centres of discrete data: dequantise for likelihoods
    num_levels: Optional[int] = None   # levels per value of discrete data (None with eight_bit: 256)
    # class labels: int64 [N_train] / [N_test] in [0, num_classes), or None if the set has none
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
    def labels(self) -> Optional[Tuple[Tensor, Tensor]]:
        """(train_labels, test_labels), or None for unlabelled data."""
        return None if self.train_labels is None else (self.train_labels, self.test_labels)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.train.shape[1:])


# ---- the registry ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DataSpec:
    """A registered data set: its function `fn(config.data) -> Dataset` and a one-line description."""
    name: str
    fn: Callable
    doc: str


_REGISTRY: Dict[str, DataSpec] = {}
#: Read-only view name -> DataSpec of every registered data set (`name in DATASETS`, `list(DATASETS)`).
DATASETS: Mapping[str, DataSpec] = MappingProxyType(_REGISTRY)


def register_dataset(name: str, fn: Optional[Callable] = None, *, doc: str = ""):
    """Register `fn(d) -> Dataset` (d: the `config.data` block) as `data.dataset=name`; a decorator
    when `fn` is omitted. Refuses a name that is taken (`unregister_dataset` it first)."""
    if fn is None:
        return lambda f: register_dataset(name, f, doc=doc) and f
    if not isinstance(name, str) or not name:
        raise ValueError(f"data set name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"data set {name!r} is already registered (unregister_dataset({name!r}) first)")
    if not callable(fn):
        raise ValueError(f"fn for data set {name!r} must be callable, got {type(fn).__name__}")
    doc = doc or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
    spec = DataSpec(name, fn, doc)
    _REGISTRY[name] = spec
    return spec


def unregister_dataset(name: str) -> DataSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; expected one of {list(_REGISTRY)}")
    return _REGISTRY.pop(name)


def get_dataset(config) -> Dataset:
    """The data set `config.data.dataset` with its fixed train/test split, checked against the
    shape the network is built for (`data.image_size`, `data.num_channels` or `data.dim`)."""
    d = config.data
    if d.dataset not in _REGISTRY:
        raise ConfigError("data.dataset", d.dataset, f"one of {sorted(_REGISTRY)}")
    ds = _REGISTRY[d.dataset].fn(d)
    if not isinstance(ds, Dataset):
        raise TypeError(f"data set function {d.dataset!r} returned {type(ds).__name__}, not a Dataset")
    check_config_matches(ds, config)
    return ds


# ---- building blocks of data set functions ----------------------------------------------------

def split(x: Tensor, test_fraction: float, seed: int) -> Tuple[Tensor, Tensor]:
    """A random train/test split fixed by `seed` (same seed and length, same split)."""
    if not (0.0 < test_fraction < 1.0):
        raise ConfigError("data.test_fraction", test_fraction, "a number in (0, 1)")
    n = x.shape[0]
    n_test = max(1, int(round(n * test_fraction)))
    if n_test >= n:
        raise InputError(f"cannot split {n} examples with test_fraction={test_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return x[perm[n_test:]], x[perm[:n_test]]


def _labelled(name, x, labels, d, class_names=None, **kw) -> Dataset:
    """Split x and its labels (if any) with the same permutation into a Dataset."""
    train, test = split(x, d.test_fraction, d.split_seed)
    if labels is None:
        return Dataset(name, train, test, **kw)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if y.shape != (x.shape[0],) or (y < 0).any():
        raise InputError(f"data set {name!r}: labels must be {x.shape[0]} non-negative ints, got shape "
                         f"{tuple(y.shape)}")
    y_train, y_test = split(y, d.test_fraction, d.split_seed)
    k = len(class_names) if class_names else int(y.max()) + 1
    return Dataset(name, train, test, train_labels=y_train, test_labels=y_test, num_classes=k,
                   class_names=tuple(class_names) if class_names else None, **kw)


def discrete_dataset(name: str, a: np.ndarray, d, labels=None, class_names=None, own_levels: int = 256,
                     is_image: bool = True) -> Dataset:
    """Discrete data `a` (images `[N, C, H, W]`, or vectors `[N, D]` with is_image=False) of integer
    levels 0..own_levels-1 (8-bit: uint8) as a split Dataset. For 8-bit data `data.num_levels` may
    declare fewer, equally spaced levels round(k 255 / (L - 1)); 0 keeps the data's own levels."""
    levels = declared_levels(d)
    if own_levels == 256:
        x, L = levels_of_uint8(np.asarray(a, dtype=np.uint8), levels, name), levels or 256
    else:
        if levels not in (None, own_levels):
            raise ConfigError("data.num_levels", d.num_levels, f"0 or {own_levels} (the levels of {name!r})")
        x, L = levels_to_model(a, own_levels), own_levels
    return _labelled(name, x, labels, d, class_names, is_image=is_image, eight_bit=True, num_levels=L)


def vector_dataset(name: str, x: Tensor, d, labels=None, split_at: Optional[int] = None) -> Dataset:
    """Continuous vectors `[N, D]` as a Dataset: the first `split_at` rows train, the rest test
    (generated data), or a seeded split by `data.test_fraction`."""
    if declared_levels(d) is not None:
        raise ConfigError("data.num_levels", d.num_levels, f"0 (data set {name!r} is continuous)")
    x = torch.as_tensor(x).float()
    if split_at is None:
        return _labelled(name, x, labels, d, is_image=False, eight_bit=False)
    y = None if labels is None else torch.as_tensor(labels).long()
    k = 0 if y is None else int(y.max()) + 1
    return Dataset(name, x[:split_at], x[split_at:], is_image=False, eight_bit=False,
                   train_labels=None if y is None else y[:split_at], test_labels=None if y is None else y[split_at:],
                   num_classes=k)


def check_config_matches(ds: Dataset, config) -> None:
    """The network is built from config.data; refuse data whose shape disagrees with it."""
    d = config.data
    if ds.is_image:
        C, H, W = ds.shape
        if H != W:
            raise InputError(f"data set {ds.name!r} has non-square images {H}x{W}; the U-Net needs square images")
        if (d.image_size, d.num_channels) != (H, C):
            raise InputError(f"data set {ds.name!r} has images of shape {ds.shape} but the config says "
                             f"data.image_size={d.image_size}, data.num_channels={d.num_channels}")
    elif d.dim != ds.shape[0]:
        raise InputError(f"data set {ds.name!r} has vectors of dimension {ds.shape[0]} but the config says "
                         f"data.dim={d.dim}")


# ---- the built-in data sets -------------------------------------------------------------------

def _generated_sizes(d):
    if d.num_train < 1 or d.num_test < 1:
        raise ConfigError("data.num_train", (d.num_train, d.num_test), "ints >= 1 (with data.num_test)")
    return d.num_train, d.num_test


def _toy(name: str, d) -> Dataset:
    n_train, n_test = _generated_sizes(d)
    x = toy_2d(name, n_train + n_test, torch.Generator().manual_seed(d.split_seed), d.noise)
    return vector_dataset(name, x, d, split_at=n_train)


for _name in TOY_SETS:
    register_dataset(_name, lambda d, _n=_name: _toy(_n, d), doc=f"2-D toy set {_name!r} (data.num_train/num_test)")


@register_dataset("mixture")
def mixture(d) -> Dataset:
    """Gaussian mixture data.mixture (weights, means, stds); labels: the component of each point."""
    n_train, n_test = _generated_sizes(d)
    gm = mixture_distribution(d.mixture.weights, d.mixture.means, d.mixture.stds)
    x, y = gm.sample(n_train + n_test, generator=torch.Generator().manual_seed(d.split_seed), return_labels=True)
    return vector_dataset("mixture", x.float(), d, labels=y, split_at=n_train)


@register_dataset("digits")
def digits(d) -> Dataset:
    """sklearn's bundled 8x8 digits (17 levels; data.num_levels=256 maps them to 8-bit), labelled."""
    levels = declared_levels(d)
    if levels not in (None, 17, 256):
        raise ConfigError("data.num_levels", d.num_levels, "0 or 17 (the digits' own levels) or 256 (mapped to 8-bit)")
    if levels == 256:
        return discrete_dataset("digits", load_digits_uint8(), d, labels=load_digits_labels())
    return discrete_dataset("digits", load_digits_levels(), d, labels=load_digits_labels(), own_levels=17)


@register_dataset("fashion_mnist")
def fashion_mnist(d) -> Dataset:
    """Fashion-MNIST idx files in data.path (default: the Debian package's folder); its own split."""
    if declared_levels(d) not in (None, 256):
        raise ConfigError("data.num_levels", d.num_levels, "0 or 256 (Fashion-MNIST is 8-bit)")
    directory = d.path or FASHION_MNIST_DIR
    tr, te = load_fashion_mnist(directory)
    labels = load_fashion_mnist_labels(directory)
    kw = {} if labels is None else dict(train_labels=labels[0], test_labels=labels[1], num_classes=10)
    return Dataset("fashion_mnist", uint8_to_model(tr), uint8_to_model(te), is_image=True, eight_bit=True, **kw)


#: train and test patches of `sample_patches`
SAMPLE_PATCHES = (2000, 500)


@register_dataset("sample_patches")
def sample_patches(d) -> Dataset:
    """32x32 RGB patches of sklearn's two photographs, test patches from a region train never sees; labelled."""
    # corners seeded by data.split_seed (training.readers.sample_patch_corners); 8-bit, or data.num_levels
    tr, te, ytr, yte = load_sample_patches(d.split_seed, *SAMPLE_PATCHES)
    levels = declared_levels(d)
    return Dataset("sample_patches", levels_of_uint8(tr, levels, "sample_patches"),
                   levels_of_uint8(te, levels, "sample_patches"), is_image=True, eight_bit=True,
                   num_levels=levels or 256, train_labels=torch.as_tensor(ytr), test_labels=torch.as_tensor(yte),
                   num_classes=2, class_names=("china", "flower"))


@register_dataset("folder")
def folder(d) -> Dataset:
    """PNG/JPEG images in data.path; class subfolders (root/<class>/*.png) give labels."""
    if not d.path:
        raise ConfigError("data.path", d.path, "a folder of PNG/JPEG images with data.dataset='folder'")
    labelled = load_labelled_image_folder(d.path, d.num_channels)
    if labelled is None:
        return discrete_dataset("folder", load_image_folder(d.path, d.num_channels), d)
    a, y, classes = labelled
    return discrete_dataset("folder", a, d, labels=y, class_names=classes)


@register_dataset("array")
def array(d) -> Dataset:
    """An .npy/.npz array in data.path (uint8: 8-bit data, floats: continuous); .npz labels `y` or `labels`."""
    if not d.path:
        raise ConfigError("data.path", d.path, "an .npy or .npz file with data.dataset='array'")
    a, is_image = load_array(d.path, d.key or None)
    labels = load_array_labels(d.path, a.shape[0])
    if a.dtype == np.uint8:
        return discrete_dataset("array", a, d, labels=labels, is_image=is_image)
    if declared_levels(d) is not None:
        raise ConfigError("data.num_levels", d.num_levels, f"0: {d.path!r} holds {a.dtype} values (continuous "
                                                            f"data; levels are for uint8 arrays)")
    return _labelled("array", torch.as_tensor(a).float(), labels, d, is_image=is_image, eight_bit=False)
