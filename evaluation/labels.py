"""Class labels for the feature classifier, split exactly as `training.data.get_dataset` splits
the images (same permutation from `data.split_seed`). Returns (train_labels, test_labels) or
None for unlabelled data. Nothing is downloaded."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from training import data as data_lib
from training import readers
from configs.errors import InputError

Tensor = torch.Tensor


def dataset_labels(config, ds) -> Optional[Tuple[Tensor, Tensor]]:
    """Labels of `ds` (the Dataset that `get_dataset(config)` returned), or None if it has none.

    digits: sklearn's targets; fashion_mnist: the idx label files next to the images;
    array: an `.npz` label array named `y` or `labels` (one per example); folder, toy sets and
    mixtures: None.
    """
    d = config.data
    seed, tf = int(d.get("split_seed", 0)), float(d.get("test_fraction", 0.2))
    if ds.name == "digits":
        from sklearn.datasets import load_digits
        y = torch.as_tensor(load_digits().target).long()
        return data_lib.split(y, tf, seed)
    if ds.name == "fashion_mnist":
        directory = d.get("path", None) or readers.FASHION_MNIST_DIR
        out = []
        for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
            path = readers._find(directory, stem)
            y = readers.read_idx(path)
            if y.ndim != 1:
                raise InputError(f"{path}: expected labels [N], got shape {y.shape}")
            out.append(torch.as_tensor(y.astype(np.int64)))
        return out[0], out[1]
    if ds.name == "array" and str(d.get("path", "")).endswith(".npz"):
        with np.load(d.path) as z:
            key = next((k for k in ("y", "labels") if k in z.files), None)
            if key is None:
                return None
            y = np.asarray(z[key])
        n = ds.train.shape[0] + ds.test.shape[0]
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
            raise InputError(f"{d.path!r}: label array {key!r} must hold {n} non-negative integers "
                             f"(one per example), got shape {y.shape}, dtype {y.dtype}")
        return data_lib.split(torch.as_tensor(y.astype(np.int64)), tf, seed)
    return None
