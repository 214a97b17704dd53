"""Class labels of the data sets (issue 10) and label dropout for classifier-free guidance.

`training.data.get_dataset` attaches labels where the data has them: digits (the digit),
Fashion-MNIST (the idx label files, when present next to the images), mixtures (the component
each point was drawn from) and image folders organised as `root/<class>/*.png` (classes in
sorted subfolder-name order). Toy sets and arrays carry no labels.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch

Tensor = torch.Tensor


def check_label_dropout(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 <= p <= 1.0):
        raise ValueError(f"training.label_dropout must lie in [0, 1], got {p!r}")
    return float(p)


def drop_labels(y: Tensor, p: float, null_label: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Label dropout (Ho & Salimans 2022): each label becomes `null_label` with probability p, so one
    network learns the conditional and the unconditional score."""
    check_label_dropout(p)
    if p == 0.0:
        return y
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p
    return torch.where(drop, torch.full_like(y, null_label), y)


def load_labelled_image_folder(directory: str, num_channels: int):
    """A folder of class subfolders (`root/<class>/*.png`), classes in sorted name order:
    (uint8 `[N, C, H, W]`, int64 labels `[N]`, class names). None if `directory` holds images itself."""
    from .data import IMAGE_SUFFIXES, load_image_folder
    if not os.path.isdir(directory):
        raise ValueError(f"image folder {directory!r} does not exist or is not a directory")
    if any(f.lower().endswith(IMAGE_SUFFIXES) for f in os.listdir(directory)):
        return None
    classes = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if not classes:
        raise ValueError(f"image folder {directory!r} holds no PNG/JPEG files and no class subfolders")
    arrays = [load_image_folder(os.path.join(directory, c), num_channels) for c in classes]
    if len({a.shape[1:] for a in arrays}) > 1:
        raise ValueError(f"class subfolders of {directory!r} hold images of different sizes: "
                         f"{dict(zip(classes, [a.shape[1:] for a in arrays]))}")
    labels = np.concatenate([np.full(len(a), i, dtype=np.int64) for i, a in enumerate(arrays)])
    return np.concatenate(arrays), labels, tuple(classes)


def load_fashion_mnist_labels(directory: str):
    """(train, test) int64 labels from the idx label files, or None if they are not in `directory`."""
    from .data import _find, read_idx
    out = []
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        if not any(os.path.exists(os.path.join(directory, stem + e)) for e in ("", ".gz")):
            return None
        out.append(torch.from_numpy(read_idx(_find(directory, stem)).astype(np.int64)))
    return out[0], out[1]


def check_labels(dataset, num_classes: int) -> None:
    """A class-conditional model (model.num_classes > 0) needs a labelled data set with that many classes."""
    if dataset.train_labels is None:
        raise ValueError(f"model.num_classes = {num_classes} needs class labels, but data set {dataset.name!r} "
                         f"has none (labelled: digits, fashion_mnist with label files, mixture, folder of "
                         f"class subfolders)")
    if dataset.num_classes != num_classes:
        raise ValueError(f"model.num_classes = {num_classes} but data set {dataset.name!r} has "
                         f"{dataset.num_classes} classes")
