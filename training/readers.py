"""Readers of data files: the bundled digits, idx files (Fashion-MNIST images and labels), folders of
PNG/JPEG images (flat, or class subfolders), and .npy/.npz arrays. Each returns numpy arrays as
stored (uint8 levels, or floats); `training.data` turns them into data sets. Nothing is downloaded.
"""
from __future__ import annotations

import gzip
import os
import struct
from typing import Optional, Tuple

import numpy as np
import torch
from configs.errors import InputError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_digits_levels() -> np.ndarray:
    """sklearn's bundled 8x8 digits, their own 17 levels 0..16 as int64 `[1797, 1, 8, 8]`."""
    from sklearn.datasets import load_digits
    return np.round(load_digits().images).astype(np.int64)[:, None]


def load_digits_uint8() -> np.ndarray:
    """sklearn's bundled 8x8 digits (values 0..16) mapped to 8-bit: round(v * 255 / 16). `[1797, 1, 8, 8]`."""
    from sklearn.datasets import load_digits
    v = load_digits().images
    return np.round(v * (255.0 / 16.0)).astype(np.uint8)[:, None]


def load_digits_labels() -> np.ndarray:
    """The digit (0..9) of each of sklearn's 1797 bundled 8x8 digits, int64 `[1797]`."""
    from sklearn.datasets import load_digits
    return load_digits().target.astype(np.int64)


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (optionally .gz): magic 0x0000 08 <ndim>, big-endian int32 dims, uint8 data."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise InputError(f"{path}: not an idx file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim < 1:
        raise InputError(f"{path}: not an unsigned-byte idx file (magic bytes {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = int(np.prod(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != expected:
        raise InputError(f"{path}: header says shape {dims} ({expected} bytes) but the file holds {data.size}")
    return data.reshape(dims)


def _find(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    raise InputError(f"Fashion-MNIST file {stem}[.gz] not found in {directory!r} (install the Debian "
                     f"package dataset-fashion-mnist or set config.data.path; nothing is downloaded)")


def load_fashion_mnist(directory: str) -> Tuple[np.ndarray, np.ndarray]:
    """(train, test) uint8 arrays `[N, 1, 28, 28]` from the standard idx files in `directory`."""
    out = []
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        p = _find(directory, stem)
        a = read_idx(p)
        if a.ndim != 3:
            raise InputError(f"{p}: expected images [N, H, W], got shape {a.shape}")
        out.append(a[:, None])
    return out[0], out[1]


def load_image_folder(directory: str, num_channels: int) -> np.ndarray:
    """All PNG/JPEG files of a folder (sorted by name) as uint8 `[N, C, H, W]`; sizes must agree."""
    from PIL import Image
    if not os.path.isdir(directory):
        raise InputError(f"image folder {directory!r} does not exist or is not a directory")
    files = sorted(f for f in os.listdir(directory) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise InputError(f"image folder {directory!r} holds no PNG/JPEG files (class subfolders: "
                         f"see load_labelled_image_folder)")
    if num_channels not in (1, 3):
        raise InputError(f"image folders need data.num_channels 1 (grey) or 3 (RGB), got {num_channels}")
    mode = "L" if num_channels == 1 else "RGB"
    arrays, first = [], None
    for f in files:
        path = os.path.join(directory, f)
        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert(mode), dtype=np.uint8)
        except Exception as e:  # PIL raises many types for a bad file
            raise InputError(f"cannot read image {path!r}: {e}") from None
        if first is None:
            first = (f, a.shape)
        elif a.shape != first[1]:
            raise InputError(f"image {path!r} has size {a.shape[1]}x{a.shape[0]} but {first[0]!r} has "
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
        raise InputError(f"data file {path!r} does not exist")
    try:
        if path.endswith(".npz"):
            with np.load(path) as z:
                keys = list(z.keys())
                if not keys:
                    raise InputError(f"{path!r} holds no arrays")
                k = key if key else ("x" if "x" in keys else keys[0])
                if k not in keys:
                    raise InputError(f"{path!r} has no array {k!r}; it holds {keys}")
                a = z[k]
        elif path.endswith(".npy"):
            a = np.load(path)
        else:
            raise InputError(f"data file {path!r} must end in .npy or .npz")
    except ValueError:
        raise
    except Exception as e:
        raise InputError(f"cannot read {path!r}: {e}") from None
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        if np.issubdtype(a.dtype, np.integer):
            a = a.astype(np.float64)
        else:
            raise InputError(f"{path!r}: unsupported dtype {a.dtype}; expected uint8 or float")
    if a.ndim == 2:
        is_image = False
    elif a.ndim == 3:
        a, is_image = a[:, None], True
    elif a.ndim == 4:
        is_image = True
        if a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3, 4):
            a = a.transpose(0, 3, 1, 2)
    else:
        raise InputError(f"{path!r}: array of shape {a.shape} has rank {a.ndim}; expected [N, D], [N, H, W], "
                         f"[N, C, H, W] or [N, H, W, C]")
    if a.shape[0] < 2:
        raise InputError(f"{path!r}: need at least 2 examples, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        bad = int(np.argwhere(~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1))[0, 0]) \
            if not np.isfinite(a).all() else -1
        raise InputError(f"{path!r}: array holds NaN or inf values (first in example {bad})")
    return a, is_image


def load_labelled_image_folder(directory: str, num_channels: int):
    """A folder of class subfolders (`root/<class>/*.png`), classes in sorted name order:
    (uint8 `[N, C, H, W]`, int64 labels `[N]`, class names). None if `directory` holds images itself."""
    if not os.path.isdir(directory):
        raise InputError(f"image folder {directory!r} does not exist or is not a directory")
    if any(f.lower().endswith(IMAGE_SUFFIXES) for f in os.listdir(directory)):
        return None
    classes = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if not classes:
        raise InputError(f"image folder {directory!r} holds no PNG/JPEG files and no class subfolders")
    arrays = [load_image_folder(os.path.join(directory, c), num_channels) for c in classes]
    if len({a.shape[1:] for a in arrays}) > 1:
        raise InputError(f"class subfolders of {directory!r} hold images of different sizes: "
                         f"{dict(zip(classes, [a.shape[1:] for a in arrays]))}")
    labels = np.concatenate([np.full(len(a), i, dtype=np.int64) for i, a in enumerate(arrays)])
    return np.concatenate(arrays), labels, tuple(classes)


def load_fashion_mnist_labels(directory: str):
    """(train, test) int64 labels from the idx label files, or None if they are not in `directory`."""
    out = []
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        if not any(os.path.exists(os.path.join(directory, stem + e)) for e in ("", ".gz")):
            return None
        out.append(torch.from_numpy(read_idx(_find(directory, stem)).astype(np.int64)))
    return out[0], out[1]


def load_array_labels(path: str, n: int) -> Optional[np.ndarray]:
    """Class labels stored beside an array: the `y` (or `labels`) array of an .npz, one non-negative
    int per example (`n` of them), int64; None for .npy files and .npz files without one."""
    if not path.endswith(".npz"):
        return None
    with np.load(path) as z:
        key = next((k for k in ("y", "labels") if k in z.files), None)
        if key is None:
            return None
        y = np.asarray(z[key])
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise InputError(f"{path!r}: label array {key!r} must hold {n} non-negative integers (one per example), "
                         f"got shape {y.shape}, dtype {y.dtype}")
    return y.astype(np.int64)


#: sklearn's sample photographs are cut into train patches left of this column and test patches right of it
SAMPLE_PATCH_TEST_COLUMN = 480


def sample_patch_corners(seed: int, n_train: int, n_test: int, size: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """Top-left corners `(image, row, col)` int64 `[n, 3]` of the train and test patches of
    `load_sample_patches`: drawn uniformly with `seed`, `n/2` per photograph, train patches inside
    columns `[0, 480)` and test patches inside `[480, 640)` of each photograph, so no pixel is in both."""
    rng = np.random.default_rng(seed)

    def corners(n, col_lo, col_hi):
        image = np.arange(n) % 2
        row = rng.integers(0, 427 - size + 1, n)
        col = rng.integers(col_lo, col_hi - size + 1, n)
        return np.stack([image, row, col], 1).astype(np.int64)

    return corners(n_train, 0, SAMPLE_PATCH_TEST_COLUMN), corners(n_test, SAMPLE_PATCH_TEST_COLUMN, 640)


def load_sample_patches(seed: int, n_train: int, n_test: int, size: int = 32):
    """`size`x`size` RGB patches (uint8 `[n, 3, size, size]`) of sklearn's two bundled photographs
    (china, flower; 427x640 each) at the corners of `sample_patch_corners`: (train, test, train
    labels, test labels), the label being the photograph."""
    from sklearn.datasets import load_sample_images
    images = load_sample_images().images
    out = []
    for c in sample_patch_corners(seed, n_train, n_test, size):
        a = np.stack([images[k][r:r + size, q:q + size] for k, r, q in c]).transpose(0, 3, 1, 2)
        out.append((np.ascontiguousarray(a), c[:, 0].copy()))
    (tr, ytr), (te, yte) = out
    return tr, te, ytr, yte
