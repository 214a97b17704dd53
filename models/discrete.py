"""Discrete-time models in continuous time: t -> the fractional step k of an N-step chain.

A model trained on N discrete noise levels (DDPM's 1000 steps, NCSN's geometric sigmas) is
conditioned on the step index k in {0, ..., N-1}, whose level has half log-SNR lambda_k =
log(m_k / s_k) (decreasing in k). A continuous-time sampler asks for the score at any t.
Following k-diffusion (Crowson; `DiscreteSchedule.sigma_to_t`), we find the step whose
log-SNR equals lambda(t) by interpolating linearly in lambda between the two neighbouring
steps, and give the model that fractional step:

    lambda_{j+1} <= lambda <= lambda_j:   k = j + w,   w = (lambda_j - lambda) / (lambda_j - lambda_{j+1}),

clamped to [0, N-1]. `model.label = "discrete_step"` uses it (`models.parameterization`).

**The clamp below the first step.** For lambda > lambda_0 (less noise than the first step
has; t below the first step's time) the label stays k = 0: the model is told the noise level
of step 0, while x carries less. The log-SNR mismatch is lambda - lambda_0 (`mismatch`).
For DDPM's chain (beta 1e-4..0.02) on VP (beta 0.1..20): lambda_0 = 4.6051 (sigma_0 =
0.010001, the SDE reaches it at t = 9.17e-4); at t = 1e-3 (VP's eps) lambda = 4.5577, inside
the chain (k = 0.120); at t = 1e-4 the mismatch is 1.146, at t = 1e-5 (lambda = 6.9073) it is
2.302: the model is told sigma = 0.010 while x carries 0.0010. On the exact oracle its effect
on log p_eps(x) at eps = 1e-5 is below the standard error for a smooth mixture (component std
0.3: -0.00008 +- 0.00010 nats per 4-D example) and 0.024 +- 0.009 bits/dim for a mixture with
structure at 8-bit pixel scale (std 0.01); at eps = 1e-3 both are within 2 SE of 0.
`OMP_NUM_THREADS=1 python bench/discrete_time.py --n 128` (bench/results/discrete_time.json).
Above the last step (lambda < lambda_{N-1}) k stays N - 1 symmetrically.

**Error bound** (tested in `tests/test_parameterization.py` on the exact mixture oracle).
Let the discrete eps model be exact at its steps, eps_N(x, j) = eps*(x, lambda_j) with
eps*(x, lambda) = -s score_lambda(x) the exact noise prediction, and linear in k between
steps (the smooth in-between behaviour of a network trained on integers). At fixed x write
g(lambda) = eps*(x, lambda). Through the wrapper, eps_N(x, k(lambda)) is the piecewise-linear
interpolant of g on the nodes lambda_j, so for lambda in [lambda_{j+1}, lambda_j] and every
coordinate, by the interpolation remainder,

    |eps_N - eps*| <= 1/2 (lambda_j - lambda)(lambda - lambda_{j+1}) max_{[lambda_{j+1}, lambda_j]} |g''|
                   <= h_j^2 / 8 max |g''|,                     h_j = lambda_j - lambda_{j+1},

and the score error is that divided by s(t): |score_N - score| <= h_j^2 / (8 s(t)) max |g''|.
Below the first step the error is first order in the mismatch instead:
|eps_N - eps*| <= (lambda - lambda_0) max_{[lambda_0, lambda]} |g'|, and the score error
divides it by s(t), which shrinks with t: the clamp, not the interpolation, dominates there.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


class DiscreteTimeLabel:
    """lambda -> fractional step k in [0, N-1] of a chain with log-SNRs `log_snrs` `[N]` (decreasing).

    `step(lam)` is the label; `log_snr_at(k)` the chain's piecewise-linear lambda(k) (its
    inverse on [0, N-1]); `mismatch(lam) = lam - log_snr_at(step(lam))`: 0 inside the chain,
    lam - lambda_0 below the first step, lam - lambda_{N-1} above the last.
    """

    def __init__(self, log_snrs: Tensor):
        lam = torch.as_tensor(log_snrs, dtype=torch.float64).flatten()
        if lam.numel() < 2 or not torch.isfinite(lam).all() or not (lam[1:] < lam[:-1]).all():
            raise ValueError(f"a discrete chain needs >= 2 finite, strictly decreasing log-SNRs, got "
                             f"{lam.numel()} values in [{lam.min().item():.4g}, {lam.max().item():.4g}]")
        self.log_snrs = lam
        self.N = lam.numel()
        self._neg = -lam                      # increasing: searchsorted needs ascending order

    def step(self, lam: Tensor) -> Tensor:
        """Fractional step k `[B]` (float64) with lambda(k) = lam, clamped to [0, N-1]."""
        q = -lam.detach().double()
        neg = self._neg.to(q.device)
        hi = torch.searchsorted(neg, q).clamp(1, self.N - 1)
        lo = hi - 1
        w = ((q - neg[lo]) / (neg[hi] - neg[lo])).clamp(0.0, 1.0)
        return lo.double() + w

    def log_snr_at(self, k: Tensor) -> Tensor:
        """The chain's lambda at fractional steps k `[B]` (linear between steps), float64."""
        k = k.double().cpu().clamp(0, self.N - 1)
        lo = k.floor().long().clamp(max=self.N - 2)
        w = k - lo.double()
        return (1 - w) * self.log_snrs[lo] + w * self.log_snrs[lo + 1]

    def mismatch(self, lam: Tensor) -> Tensor:
        """lam - lambda(step(lam)) `[B]` float64: the log-SNR the model is not told about."""
        return lam.double().cpu() - self.log_snr_at(self.step(lam).cpu())


def vp_marginal_at_log_snr(lam: Tensor):
    """(m, s) of a variance-preserving marginal at half log-SNR lam: m^2 = sigmoid(2 lam),
    s^2 = sigmoid(-2 lam) (m^2 + s^2 = 1, log(m/s) = lam), for any lam."""
    return torch.sigmoid(2 * lam).sqrt(), torch.sigmoid(-2 * lam).sqrt()


class _LogSNRIndexedVP:
    """Duck-typed SDE for `GaussianMixture.score_t` whose 'time' is the log-SNR itself."""
    check_time = False

    @staticmethod
    def marginal_coeffs(lam):
        return vp_marginal_at_log_snr(lam)


def exact_eps(gm, x: Tensor, lam: Tensor) -> Tensor:
    """eps*(x, lam) = -s grad log p_lam(x) `[B, *dims]`: the exact noise prediction of the mixture
    `gm` under a VP marginal at log-SNR lam `[B]` (DDPM's x = sqrt(abar) x_0 + sqrt(1 - abar) z)."""
    _, s = vp_marginal_at_log_snr(lam)
    return -s.reshape(-1, *([1] * (x.dim() - 1))) * gm.score_t(_LogSNRIndexedVP, x, lam)


def discrete_eps_oracle(gm, log_snrs: Tensor):
    """The exact-mixture stand-in for a DDPM eps network trained on N discrete steps:
    net(x, k) = eps*(x, lambda_k) at integer k, linear in k between steps (the smooth
    in-between behaviour of a network that saw integers only). `log_snrs` `[N]`: the chain's."""
    table = torch.as_tensor(log_snrs, dtype=torch.float64)
    N = table.numel()

    def net(x: Tensor, k: Tensor) -> Tensor:
        j = k.detach().floor().long().clamp(0, N - 2)
        w = (k.to(x.dtype) - j.to(x.dtype)).reshape(-1, *([1] * (x.dim() - 1)))
        lo, hi = table[j].to(x.dtype), table[j + 1].to(x.dtype)
        return (1 - w) * exact_eps(gm, x, lo) + w * exact_eps(gm, x, hi)
    return net
