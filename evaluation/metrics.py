"""Sample-quality metrics between two feature sets `[n, d]` (reference first, samples second).

Each is a plain function of two tensors, computed in float64:

- `frechet_distance`: Fréchet distance between Gaussians fitted to the two sets (Heusel et al.
  2017): |mu_r - mu_s|^2 + tr(S_r + S_s - 2 (S_r^1/2 S_s S_r^1/2)^1/2).
- `kernel_inception_distance`: unbiased MMD^2 with the cubic polynomial kernel
  k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018), averaged over disjoint random subsets,
  with the standard error of that mean.
- `precision_recall`: improved precision and recall (Kynkäänniemi et al. 2019), k-NN balls.
- `density_coverage`: density and coverage (Naeem et al. 2020), k-NN balls of the reference.
- `label_histogram_tv`: total-variation distance between two predicted-label histograms.

Why these are written here and not taken from torchmetrics / prdc: each is a few lines of
tensor algebra with a closed form to test against; KID needs an explicit `torch.Generator`
for its subsets and the standard error of the subset mean (torchmetrics draws subsets from
the global RNG and reports the standard deviation of one subset); prdc is numpy-only and
unmaintained since 2020. `tests/test_evaluation.py` checks both agree with ours when they
are installed.
"""
from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Tuple

import torch

from configs.errors import InputError
from solvers.metrics import Estimate


class Metric(NamedTuple):
    """One row of the metric table: its display title and which way is better."""
    title: str
    lower_is_better: bool


#: The one metric table of `SampleEvaluator` and the compare report (display order). A new metric
#: is a function here, a line in `SampleEvaluator.evaluate`, and a row here.
METRICS: Dict[str, Metric] = {
    "fd": Metric("FD (features)", True),
    "kid": Metric("KID (features)", True),
    "precision": Metric("precision (k=3)", False),
    "recall": Metric("recall (k=3)", False),
    "density": Metric("density (k=5)", False),
    "coverage": Metric("coverage (k=5)", False),
    "label_tv": Metric("label-histogram TV", True),
    "sliced_w1": Metric("sliced W1 (data space)", True),
    "dlogp": Metric("dlogp (exact log-density gap)", False),
    "component_tv": Metric("component TV (exact)", True),
    "inception_fd": Metric("Inception FD", True),
    "inception_kid": Metric("Inception KID", True),
}

Tensor = torch.Tensor


def _as_features(name: str, x: Tensor) -> Tensor:
    if not torch.is_tensor(x) or x.dim() != 2:
        raise InputError(f"{name} must be a feature tensor [n, d], got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if x.shape[0] < 2:
        raise InputError(f"{name} needs at least 2 rows, got {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise InputError(f"{name} holds NaN or inf values")
    return x.detach().to(torch.float64)


def _pair(a: Tensor, b: Tensor) -> Tuple[Tensor, Tensor]:
    a, b = _as_features("reference features", a), _as_features("sample features", b)
    if a.shape[1] != b.shape[1]:
        raise InputError(f"feature dimensions differ: {a.shape[1]} (reference) vs {b.shape[1]} (samples)")
    return a, b


def _sqrtm_psd(s: Tensor) -> Tensor:
    lam, u = torch.linalg.eigh(s)
    return (u * lam.clamp(min=0).sqrt()) @ u.T


def frechet_distance(ref: Tensor, x: Tensor) -> float:
    """Fréchet distance between N(mu_r, S_r) and N(mu_x, S_x) fitted to `ref` and `x` `[n, d]`.

    The matrix square root term tr((S_r S_x)^1/2) equals tr((S_r^1/2 S_x S_r^1/2)^1/2), whose
    argument is symmetric PSD, so it is the sum of square roots of its eigenvalues (no complex
    `sqrtm`). Covariances use the unbiased 1/(n - 1) normalisation, as in Heusel et al.
    """
    a, b = _pair(ref, x)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    r = _sqrtm_psd(s_a)
    cross = torch.linalg.eigvalsh(r @ s_b @ r).clamp(min=0).sqrt().sum()
    fd = (mu_a - mu_b).pow(2).sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * cross
    return float(fd.clamp(min=0))


def _mmd2_unbiased(a: Tensor, b: Tensor) -> Tensor:
    """Unbiased MMD^2 with k(u, v) = (u.v / d + 1)^3 for B subset pairs `[B, m, d]` at once -> `[B]`."""
    d, m = a.shape[-1], a.shape[-2]
    kaa = (a @ a.transpose(1, 2) / d + 1) ** 3
    kbb = (b @ b.transpose(1, 2) / d + 1) ** 3
    kab = (a @ b.transpose(1, 2) / d + 1) ** 3
    off = m * (m - 1)
    within = (kaa.sum((1, 2)) - kaa.diagonal(dim1=1, dim2=2).sum(1)
              + kbb.sum((1, 2)) - kbb.diagonal(dim1=1, dim2=2).sum(1)) / off
    return within - 2 * kab.mean((1, 2))


def kernel_inception_distance(ref: Tensor, x: Tensor, subset_size: Optional[int] = None,
                              generator: Optional[torch.Generator] = None) -> Estimate:
    """KID: the mean of unbiased MMD^2 estimates over disjoint random subsets, and its SE.

    Both sets are shuffled (with `generator`) and cut into B disjoint subset pairs of size m,
    B = min(n_ref, n_x) // m. The subsets are independent, so the mean is unbiased and
    sd/sqrt(B) is an honest standard error. `subset_size` defaults to
    min(1000, max(2, min(n_ref, n_x) // 8)): Binkowski et al.'s 1000 for large sets, and at
    least 8 subsets for the few hundred samples of small data sets (the digits' test split has 359).
    Returns (kid, stderr); stderr is nan when B = 1.
    """
    a, b = _pair(ref, x)
    n = min(a.shape[0], b.shape[0])
    m = min(1000, max(2, n // 8)) if subset_size is None else int(subset_size)
    if not 2 <= m <= n:
        raise InputError(f"KID subset_size must lie in [2, {n}] (the smaller set's size), got {subset_size!r}")
    blocks = n // m
    ia = torch.randperm(a.shape[0], generator=generator)[:blocks * m].view(blocks, m)
    ib = torch.randperm(b.shape[0], generator=generator)[:blocks * m].view(blocks, m)
    vals = _mmd2_unbiased(a[ia], b[ib])
    se = float(vals.std() / math.sqrt(blocks)) if blocks > 1 else float("nan")
    return Estimate(float(vals.mean()), se)


def _kth_neighbour_radius(x: Tensor, k: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row, `[n]`."""
    if not 1 <= k < x.shape[0]:
        raise InputError(f"k must lie in [1, {x.shape[0] - 1}] for a set of {x.shape[0]} points, got {k}")
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values       # the 1st smallest is the point itself (0)


def precision_recall(ref: Tensor, x: Tensor, k: int = 3) -> Dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    The reference manifold is the union of balls around each reference point with radius its
    distance to its k-th nearest reference neighbour; precision is the fraction of samples
    inside it. Recall swaps the roles: the fraction of reference points inside the samples'
    manifold.
    """
    a, b = _pair(ref, x)
    ra, rb = _kth_neighbour_radius(a, k), _kth_neighbour_radius(b, k)
    d = torch.cdist(b, a)                                  # [n_x, n_ref]
    precision = (d <= ra[None, :]).any(dim=1).double().mean()
    recall = (d <= rb[:, None]).any(dim=0).double().mean()
    return {"precision": float(precision), "recall": float(recall)}


def density_coverage(ref: Tensor, x: Tensor, k: int = 5) -> Dict[str, float]:
    """Density and coverage (Naeem et al. 2020), both from the reference's k-NN balls B(r_i, R_i).

    density  = 1/(k M) sum_j sum_i 1[x_j in B(r_i, R_i)]  (1 in expectation when x ~ ref; can exceed 1)
    coverage = 1/N sum_i 1[some x_j in B(r_i, R_i)]       (fraction of reference balls hit)
    """
    a, b = _pair(ref, x)
    ra = _kth_neighbour_radius(a, k)
    inside = torch.cdist(b, a) <= ra[None, :]              # [n_x, n_ref]
    density = inside.double().sum() / (k * b.shape[0])
    coverage = inside.any(dim=0).double().mean()
    return {"density": float(density), "coverage": float(coverage)}


def label_histogram(labels: Tensor, num_classes: int) -> Tensor:
    """Normalised histogram `[num_classes]` of integer labels."""
    return torch.bincount(labels.long().flatten(), minlength=num_classes).double() / labels.numel()


def label_histogram_tv(ref_labels: Tensor, labels: Tensor, num_classes: int) -> float:
    """Total-variation distance 1/2 sum_c |p_ref(c) - p(c)| between two label histograms
    (0: same class frequencies; 1: disjoint classes; dropping a class of weight w costs >= w/2)."""
    p, q = label_histogram(ref_labels, num_classes), label_histogram(labels, num_classes)
    return float(0.5 * (p - q).abs().sum())
