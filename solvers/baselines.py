"""Reference likelihoods to print beside a model's: they tell what a number means on a data set.

* `per_pixel_categorical`: an independent categorical per dimension over the data's L
  levels, fitted to the train split by counting with add-alpha smoothing,
  P_j(k) = (n_jk + alpha) / (n + alpha L). Its bits/dim is the exact code length of the
  discrete data, -sum_j log2 P_j(k_j) / D: the floor any model of pixel dependencies
  should beat (a smooth density that ignores the levels can be far worse).
* `gaussian_fit` / `gaussian_logp`: one full-covariance Gaussian fitted to the train
  split of the (dequantised) data, scored on the same dequantised test draws as the
  model, through the same `bits_per_dim`. For discrete data the dequantised moments are
  closed form: the mean of the bin centres and their covariance plus w^2/12 I (a
  uniform offset in a bin of width w), i.e. the Gaussian of maximum likelihood for
  the dequantised train split in expectation. With fewer train examples than dimensions
  (N - 1 < D) or a singular covariance the fit is degenerate: `gaussian_not_applicable`
  says why, and the eval reports the baseline as not applicable instead of a number.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

Tensor = torch.Tensor


def per_pixel_categorical(train_levels: Tensor, test_levels: Tensor, num_levels: int,
                          alpha: float = 0.5) -> Tensor:
    """`[N_test]` bits/dim of each test example under per-dimension categoricals fitted to train.

    train_levels, test_levels: integer levels in {0..L-1}, `[N, *dims]`. alpha: add-alpha
    smoothing (0.5: the Krichevsky-Trofimov estimator), which keeps unseen levels finite.
    """
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
        raise ValueError(f"num_levels must be an int >= 2, got {num_levels!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (unseen levels would cost infinitely many bits), got {alpha!r}")
    tr = train_levels.reshape(train_levels.shape[0], -1).long()
    te = test_levels.reshape(test_levels.shape[0], -1).long()
    if tr.shape[1] != te.shape[1]:
        raise ValueError(f"train and test have different dimensions: {tuple(train_levels.shape[1:])} vs "
                         f"{tuple(test_levels.shape[1:])}")
    for name, k in (("train", tr), ("test", te)):
        if k.min() < 0 or k.max() >= num_levels:
            raise ValueError(f"{name} levels must lie in 0..{num_levels - 1}, got {k.min().item()}..{k.max().item()}")
    n, D = tr.shape
    counts = torch.zeros(D, num_levels, dtype=torch.float64)
    counts.scatter_add_(1, tr.t(), torch.ones(D, n, dtype=torch.float64))
    logP = torch.log2(counts + alpha) - math.log2(n + alpha * num_levels)        # [D, L]
    return -logP.gather(1, te.t()).t().sum(1) / D


def gaussian_fit(train: Tensor, bin_width: Optional[float] = None) -> Tuple[Tensor, Tensor]:
    """(mean `[D]`, covariance `[D, D]`) in float64 of the train split `[N, *dims]`.

    With `bin_width` w (discrete data given as bin centres), the moments of the uniformly
    dequantised data: the covariance gains w^2/12 on the diagonal.
    """
    x = train.reshape(train.shape[0], -1).double()
    mu = x.mean(0)
    xc = x - mu
    cov = xc.t() @ xc / x.shape[0]
    if bin_width is not None:
        cov = cov + (bin_width ** 2 / 12.0) * torch.eye(x.shape[1], dtype=torch.float64)
    return mu, cov


def gaussian_logp(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """`[B]` log N(x; mean, cov) in nats (float64) for x `[B, *dims]`."""
    flat = x.reshape(x.shape[0], -1).double()
    mvn = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return mvn.log_prob(flat)


def gaussian_not_applicable(n_train: int, cov: Tensor, dequantized: bool) -> Optional[str]:
    """Why a Gaussian fitted to `n_train` examples with covariance `cov` `[D, D]` is no baseline, or None.

    With N - 1 < D the sample covariance has rank at most N - 1: the fit lives on an (N - 1)-dimensional
    subspace, and a test point off it pays for its distance in units of the dequantisation width
    (w^2/12 on the diagonal), which gives bits/dim in the thousands that measure that width, not the
    data. Without dequantisation a singular covariance has no density at all.
    """
    D = cov.shape[0]
    if n_train - 1 < D:
        return (f"not applicable: the train split has {n_train} examples for D = {D} dimensions, so the sample "
                f"covariance has rank at most {n_train - 1} < {D}; the fitted Gaussian covers only that subspace"
                + (" plus the dequantisation width" if dequantized else "") +
                " (use more training examples for this baseline)")
    if torch.linalg.cholesky_ex(cov).info.item() != 0:
        rank = int(torch.linalg.matrix_rank(cov).item())
        return f"not applicable: the train split's covariance is singular (rank {rank} of D = {D})"
    return None
