"""Denoising score matching losses.

Continuous time (Song et al. 2021, eq. 7): with t ~ U(eps, T), z ~ N(0, I) and
x_t = m(t) x_0 + s(t) z, the conditional score is -z / s(t), and

    L(theta) = E_t E_{x_0, z} [ lambda(t) || score_theta(x_t, t) + z / s(t) ||^2 ].

- default weighting lambda(t) = s(t)^2:   || s(t) score_theta(x_t, t) + z ||^2
  (for VP this is exactly || z - eps_theta ||^2 of DDPM, in continuous t);
- `likelihood_weighting`: lambda(t) = g(t)^2 (Song et al. 2021b), which makes the loss
  an upper bound on the negative log-likelihood (up to a constant).
- `importance_sampling` (with likelihood weighting): t ~ p(t) ∝ g(t)^2 / s(t)^2 on [eps, T]
  (`solvers.TimeProposal`) and the loss reweighted by 1 / ((T - eps) p(t)), so its
  expectation is the same as with t ~ U(eps, T); the reweighted term is
  g^2/((T - eps) p) || score + z/s ||^2 = Z/(T - eps) || s score + z ||^2 (Z = int g^2/s^2),
  the noise-prediction loss times a constant, which removes the 1/s^2 spike near eps
  that dominates the variance of the plain likelihood-weighted loss
  (`bench/likelihood_weighting.py` measures the reduction).

`reduce_mean=True` averages the squared error over the data dimensions, else it is
summed. The result is averaged over the batch.

Discrete (models trained on N fixed noise levels t_i = (i + 1) T / N, i ~ U{0..N-1}):
- DDPM (VP): || s_i score + z ||^2 = || z - eps_theta(x_i, i) ||^2;
- SMLD (VE): 1/2 || sigma_i score + z ||^2 (the sigma_i^2-weighted NCSN loss).
Since VP.discretize keeps the chain's marginals equal to the SDE's, the level-i
marginal of either chain is the SDE's marginal at t_i. Which one an SDE has is its
`discrete_objective` ("ddpm" for VPSDE, "smld" for VESDE, None for sub-VP); the loss scale
of each is `DISCRETE_OBJECTIVES`.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

import sde_lib
from sde_lib import expand_as_batch
from solvers.elbo import TimeProposal

Tensor = torch.Tensor


def _reduce(x: Tensor, reduce_mean: bool) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    return flat.mean(dim=1) if reduce_mean else flat.sum(dim=1)


def dsm_loss_per_sample(sde: sde_lib.SDE, score_fn, x0: Tensor, t: Tensor, z: Tensor,
                        reduce_mean: bool = False, likelihood_weighting: bool = False) -> Tensor:
    """lambda(t) || score(x_t, t) + z / s(t) ||^2 reduced over dims, `[B]`, for given t and z."""
    mean, std = sde.marginal_prob(x0, t)
    xt = mean + expand_as_batch(std, x0) * z
    score = score_fn(xt, t)
    if likelihood_weighting:
        g2 = sde.diffusion_coeff(t) ** 2
        return _reduce((score + z / expand_as_batch(std, z)) ** 2, reduce_mean) * g2
    return _reduce((score * expand_as_batch(std, z) + z) ** 2, reduce_mean)


def continuous_dsm_loss(sde: sde_lib.SDE, score_fn, x0: Tensor, generator: Optional[torch.Generator] = None,
                        reduce_mean: bool = False, likelihood_weighting: bool = False,
                        proposal=None) -> Tensor:
    """Monte-Carlo estimate of the continuous DSM loss on a batch x0 `[B, *dims]` (scalar).

    `proposal` (a `solvers.TimeProposal` on [sde.eps, T]) draws t from it instead of
    U(eps, T) and reweights each term by 1 / ((T - eps) p(t)): same expectation."""
    return continuous_dsm_loss_per_sample(sde, score_fn, x0, generator, reduce_mean, likelihood_weighting,
                                          proposal).mean()


def continuous_dsm_loss_per_sample(sde, score_fn, x0, generator=None, reduce_mean=False,
                                   likelihood_weighting=False, proposal=None) -> Tensor:
    """The `[B]` terms whose mean is `continuous_dsm_loss` (one t and z per sample)."""
    B = x0.shape[0]
    if proposal is None:
        t = sde.eps + (sde.T - sde.eps) * torch.rand(B, generator=generator, dtype=x0.dtype, device=x0.device)
    else:
        t, p = proposal.sample(B, generator, x0.dtype, x0.device)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    loss = dsm_loss_per_sample(sde, score_fn, x0, t, z, reduce_mean, likelihood_weighting)
    return loss if proposal is None else loss / ((sde.T - sde.eps) * p)


def discrete_levels(sde: sde_lib.SDE, B: int, generator=None, dtype=torch.float32, device=None) -> Tensor:
    """t_i = (i + 1) T / N with i ~ U{0, ..., N-1}, `[B]`."""
    i = torch.randint(0, sde.N, (B,), generator=generator, device=device)
    return (i + 1).to(dtype) * (sde.T / sde.N)


#: discrete objective -> (the SDE it belongs to, scale of || s_i score + z ||^2)
DISCRETE_OBJECTIVES = {"ddpm": ("a VPSDE", 1.0), "smld": ("a VESDE", 0.5)}


def discrete_loss_scale(sde: sde_lib.SDE, objective: Optional[str] = None) -> float:
    """The factor of || s_i score + z ||^2 in the SDE's discrete loss (DDPM 1, SMLD 1/2).
    ValueError if the SDE has no discrete objective (or not `objective`, when given)."""
    have = sde.discrete_objective
    if have not in DISCRETE_OBJECTIVES or (objective is not None and have != objective):
        if objective is not None:
            need = DISCRETE_OBJECTIVES[objective][0]
            raise ValueError(f"the discrete {objective.upper()} loss needs {need}, got {type(sde).__name__}")
        raise ValueError(f"discrete training (training.continuous=False) supports VPSDE (DDPM) and VESDE "
                         f"(SMLD), got {type(sde).__name__}")
    return DISCRETE_OBJECTIVES[have][1]


def _discrete_loss(sde, score_fn, x0, generator, reduce_mean, objective):
    scale = discrete_loss_scale(sde, objective)
    t = discrete_levels(sde, x0.shape[0], generator, x0.dtype, x0.device)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    loss = dsm_loss_per_sample(sde, score_fn, x0, t, z, reduce_mean).mean()
    return loss if scale == 1.0 else scale * loss


def ddpm_loss(sde: sde_lib.SDE, score_fn, x0: Tensor, generator=None, reduce_mean: bool = False) -> Tensor:
    """DDPM loss on the N discrete levels of a VP SDE (scalar)."""
    return _discrete_loss(sde, score_fn, x0, generator, reduce_mean, "ddpm")


def smld_loss(sde: sde_lib.SDE, score_fn, x0: Tensor, generator=None, reduce_mean: bool = False) -> Tensor:
    """SMLD/NCSN loss on the N discrete levels of a VE SDE (scalar)."""
    return _discrete_loss(sde, score_fn, x0, generator, reduce_mean, "smld")


def get_loss_fn(sde: sde_lib.SDE, continuous: bool = True, reduce_mean: bool = False,
                likelihood_weighting: bool = False, importance_sampling: bool = False) -> Callable:
    """`loss_fn(score_fn, x0, generator) -> scalar` for the configured objective."""
    if importance_sampling and not (continuous and likelihood_weighting):
        raise ValueError("training.importance_sampling draws t ∝ g^2/s^2 for the likelihood-weighted loss: it "
                         "needs training.likelihood_weighting=True and training.continuous=True")
    if continuous:
        proposal = None
        if importance_sampling:
            proposal = TimeProposal(sde, sde.eps, kind="likelihood")

        def loss_fn(score_fn, x0, generator=None):
            return continuous_dsm_loss(sde, score_fn, x0, generator, reduce_mean, likelihood_weighting, proposal)
        return loss_fn
    if likelihood_weighting:
        raise ValueError("likelihood_weighting applies to the continuous loss only (training.continuous=True)")
    discrete_loss_scale(sde)                     # raises for an SDE without a discrete objective
    objective = sde.discrete_objective
    return lambda score_fn, x0, generator=None: _discrete_loss(sde, score_fn, x0, generator, reduce_mean,
                                                               objective)
