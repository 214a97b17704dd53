"""Class-conditional training: the labels check and label dropout for classifier-free guidance.

The data set functions of `training.data` attach the labels (the one source of them):
`Dataset.train_labels` / `test_labels`.
"""
from __future__ import annotations

from typing import Optional

import torch
from configs.errors import InputError

Tensor = torch.Tensor


def check_label_dropout(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 <= p <= 1.0):
        raise InputError(f"training.label_dropout must lie in [0, 1], got {p!r}")
    return float(p)


def drop_labels(y: Tensor, p: float, null_label: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Label dropout (Ho & Salimans 2022): each label becomes `null_label` with probability p, so one
    network learns the conditional and the unconditional score."""
    check_label_dropout(p)
    if p == 0.0:
        return y
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p
    return torch.where(drop, torch.full_like(y, null_label), y)


def check_labels(dataset, num_classes: int) -> None:
    """A class-conditional model (model.num_classes > 0) needs a labelled data set with that many classes."""
    if dataset.train_labels is None:
        raise InputError(f"model.num_classes = {num_classes} needs class labels, but data set {dataset.name!r} "
                         f"has none (labelled: digits, fashion_mnist with label files, mixture, folder of "
                         f"class subfolders)")
    if dataset.num_classes != num_classes:
        raise InputError(f"model.num_classes = {num_classes} but data set {dataset.name!r} has "
                         f"{dataset.num_classes} classes")
