"""The likelihood bound of a latent score model (LSGM, Vahdat et al. 2021, Eq. 1-2):

    -log p(x) <= E_{q(z|x)} [ -log p(x | z) + log q(z | x) - log p(z) ]          (nats, per example)
                 `--- rec ---'  `-- log_q --'  `- neg_log_pz -'

with q(z | x) = N(mu(x), diag sigma^2(x)) the encoder, p(x | z) the decoder (a discretised Gaussian on
the data's levels, so the bound is on -log P(x) of the discrete data) and p(z) the latent score model's
density. The score model sees u = s z, so log p(z) = log p_u(s z) + d_z log s (`LatentCodec.
log_scale_jacobian`), log p_u from the probability-flow ODE (`solvers.log_likelihood`, a density at
t = eps). Each term is averaged over K posterior draws per example, then reported in bits per dimension
of x (divided by D ln 2) with its standard error over examples (which includes the draws' noise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch

Tensor = torch.Tensor
TERMS = ("rec", "log_q", "neg_log_pz")


@dataclass
class LatentBound:
    """`.value` bits/dim of the bound (mean over examples), `.stderr`, `.terms[name]` = (mean, SE) in
    bits/dim for rec, log_q, neg_log_pz, `.per_example[name]` `[n]` (bits/dim), `.samples` K, `.nfe`."""
    value: float
    stderr: float
    terms: Dict[str, tuple]
    per_example: Dict[str, Tensor]
    samples: int
    nfe: int = 0
    info: dict = field(default_factory=dict)


def gaussian_log_q(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)) `[B]`, summed over the latent dimensions."""
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu).square() * torch.exp(-logvar))).flatten(1).sum(1)


def _mean_se(v: Tensor):
    n = v.numel()
    return v.mean().item(), (v.std().item() / math.sqrt(n)) if n > 1 else float("nan")


def latent_bound(x: Tensor, posterior: Callable, log_px_given_z: Callable, log_pz: Callable, samples: int = 1,
                 generator: Optional[torch.Generator] = None) -> LatentBound:
    """The bound of the module docstring for every example of x `[n, *dims]`.

    posterior(x) -> (mu, logvar) `[n, *zdims]` of q(z | x); log_px_given_z(x, z) -> `[n]`;
    log_pz(z) -> (`[n]`, nfe) for *unscaled* z (a latent model: `partial(codec.log_pz, sde, score_fn)`). `samples`: K posterior draws per example (from `generator`).
    """
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    D = x[0].numel()
    with torch.no_grad():
        mu, logvar = posterior(x)
    sums = {k: torch.zeros(x.shape[0], dtype=torch.float64) for k in TERMS}
    nfe = 0
    for _ in range(samples):
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        with torch.no_grad():
            rec = -log_px_given_z(x, z)
            log_q = gaussian_log_q(z, mu, logvar)
        lp, n = log_pz(z)
        nfe += n
        for k, v in zip(TERMS, (rec, log_q, -lp)):
            sums[k] += v.detach().double().cpu()
    to_bits = 1.0 / (samples * D * math.log(2))
    per = {k: v * to_bits for k, v in sums.items()}
    total = per["rec"] + per["log_q"] + per["neg_log_pz"]
    mean, se = _mean_se(total)
    return LatentBound(mean, se, {k: _mean_se(v) for k, v in per.items()}, {**per, "bound": total}, samples, nfe)
