"""Cold diffusion sampling (Bansal et al. 2022, "Cold Diffusion: Inverting Arbitrary Image
Transforms Without Noise", Algorithms 1 and 2), for any degradation and restoration callables.

    degrade(x0 [B, *dims], t [B]) -> x_t     D, with D(x0, 0) = x0 (e.g. `sde_lib.degradations`)
    restore(x_t [B, *dims], t [B]) -> x0_hat R, e.g. a trained restoration network

On a decreasing grid ts = (t_0 > t_1 > ... > t_n), step i (s = t_i, s' = t_{i+1}):

    x0_hat   = R(x_s, s)
    naive    (Algorithm 1):  x_{s'} = D(x0_hat, s')
    improved (Algorithm 2):  x_{s'} = x_s - D(x0_hat, s) + D(x0_hat, s')

For D(x, s) = x + s e, Algorithm 2 gives x_{s'} = x_s - (s - s') e whatever R returns, so it
lands on x0 = x_T - T e exactly: only D's dependence on x0 has to be inverted, and for a
D that is smooth in x0, the errors of R cancel to first order (Bansal et al. 2022, sec. 3.3).
With the Gaussian kernel D(x0, s) = m x0 + s z and z re-estimated from x_s each step
(`hot_pair`), Algorithm 2 is DDIM with eta = 0 step for step.

Generation starts from x_T drawn from `DegradedPrior`: a Gaussian mixture fitted to fully
degraded training images, plus a small noise (the paper's recipe for blur).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from sde_lib import expand_as_batch
from sde_lib.degradations import reestimated_noise_pair

from ._common import CountedScore, SampleInfo, Timer

Tensor = torch.Tensor
ALGORITHMS = ("improved", "naive")
#: The `sampling.sampler` name of a cold run (not a registered hot sampler: it samples a restoration net).
COLD_SAMPLER = "cold"


def cold_time_grid(steps: int, T: float = 1.0, dtype=torch.float64, device=None) -> Tensor:
    """The uniform grid T = t_0 > ... > t_steps = 0, `[steps + 1]`."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return torch.linspace(T, 0.0, steps + 1, dtype=dtype, device=device)


def _check_grid(ts, x: Tensor) -> Tensor:
    ts = torch.as_tensor(ts, dtype=x.dtype, device=x.device) if not torch.is_tensor(ts) else \
        ts.to(dtype=x.dtype, device=x.device)
    if ts.dim() != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D grid of at least 2 times (T ... t_end), got shape {tuple(ts.shape)}")
    if not torch.isfinite(ts).all() or (ts < 0).any() or not (ts[1:] < ts[:-1]).all():
        raise ValueError(f"ts must be finite, >= 0 and strictly decreasing, got {ts.tolist()[:8]}...")
    return ts


def cold_sample(degrade: Callable[[Tensor, Tensor], Tensor], restore: Callable[[Tensor, Tensor], Tensor],
                x: Tensor, ts, algorithm: str = "improved", *, progress: bool = False,
                return_trajectory: bool = False):
    """Run Algorithm 2 ("improved") or 1 ("naive") of Bansal et al. (2022) from `x` = x_{ts[0]}.

    Args:
        degrade:   D(x0, t) with t `[B]`; any callable (a `sde_lib.degradations.Degradation` or not).
        restore:   R(x_t, t) -> x0_hat with t `[B]`; any callable.
        x:         `[B, *dims]` the state at ts[0] (a degraded image, or a prior draw).
        ts:        decreasing times `[n + 1]` (tensor or sequence); typically `cold_time_grid(n)` down to 0.
        algorithm: "improved" (Algorithm 2) or "naive" (Algorithm 1).
        progress:  a tqdm bar over the n steps.
        return_trajectory: keep every state in `info.trajectory` `[n + 1, B, *dims]` and every
                   restoration in `info.extra["x0_trajectory"]` `[n, B, *dims]`.

    Returns (x_{ts[-1]}, SampleInfo): `nfe` = calls of `restore` (n, one per step; D is not
    counted in nfe, `extra["degrade_calls"]` holds its calls: n for naive, 2n for improved).
    The loop draws no randomness: the result is a deterministic function of x.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown cold algorithm {algorithm!r}; expected one of {list(ALGORITHMS)}")
    for name, fn in (("degrade", degrade), ("restore", restore)):
        if not callable(fn):
            raise ValueError(f"{name} must be callable {name}(x, t), got {type(fn).__name__}")
    if not torch.is_tensor(x) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor [B, *dims], got {type(x).__name__} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bad.any():
        raise ValueError(f"x has NaN/inf values in samples {bad.nonzero().flatten().tolist()[:10]}")
    ts = _check_grid(ts, x)
    R = CountedScore(restore)
    D = CountedScore(degrade)
    B, steps = x.shape[0], ts.shape[0] - 1
    traj, x0s = ([x], []) if return_trajectory else (None, None)
    bar = None
    if progress:
        bar = tqdm(total=steps, desc=f"cold_{algorithm}")
    info = SampleInfo(sampler=f"cold_{algorithm}", options={"algorithm": algorithm, "steps": steps})
    try:
        with Timer() as timer, torch.no_grad():
            for i in range(steps):
                s, s2 = ts[i].expand(B), ts[i + 1].expand(B)
                x0 = R(x, s)
                if algorithm == "naive":
                    x = D(x0, s2)
                else:
                    x = x - D(x0, s) + D(x0, s2)
                if traj is not None:
                    traj.append(x)
                    x0s.append(x0)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    info.nfe, info.steps, info.seconds = R.nfe, steps, timer.seconds
    info.extra["degrade_calls"] = D.nfe
    if traj is not None:
        info.trajectory, info.times = torch.stack(traj), ts
        info.extra["x0_trajectory"] = torch.stack(x0s)
    return x, info


def hot_pair(sde, score_fn):
    """(degrade, restore) that make Algorithm 2 the DDIM (eta = 0) sampler of a score model:
    restore(x, t) = (x + s^2 score(x, t)) / m (Tweedie's posterior mean), and degrade(x0, t) =
    m(t) x0 + s(t) z_hat with z_hat = (x_s - m x0_hat) / s = -s score re-estimated at every step
    (`sde_lib.degradations.reestimated_noise_pair`): x_{s'} = m' x0_hat + s' z_hat, DDIM's update."""
    def tweedie(x, t):
        m, s = sde.marginal_coeffs(t)
        return (x + expand_as_batch(s, x) ** 2 * score_fn(x, t)) / expand_as_batch(m, x)
    return reestimated_noise_pair(sde, tweedie)


class DegradedPrior:
    """x_T ~ a Gaussian mixture fitted to fully degraded training images, plus N(0, noise^2 I)
    (Bansal et al. 2022, sec. 5: generation from blurred images). Sample i draws from its own
    generator seeded with seeds[i] (component, mixture draw, noise), so it does not depend on the
    batch. Parameters in float64: weights `[K]`, means `[K, D]`, Cholesky factors `[K, D, D]`."""

    def __init__(self, weights: Tensor, means: Tensor, chols: Tensor, shape, noise: float):
        self.weights, self.means, self.chols = weights, means, chols
        self.shape = tuple(shape)
        self.noise = float(noise)

    @classmethod
    def fit(cls, x_T: Tensor, components: int = 10, noise: float = 0.002, seed: int = 0,
            reg_covar: float = 1e-6) -> "DegradedPrior":
        """Fit K full-covariance components by EM (scikit-learn) to x_T `[n, *dims]` = D(x0, T)."""
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"prior components must be an int >= 1, got {components!r}")
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
            raise ValueError(f"prior noise must be a finite number >= 0, got {noise!r}")
        if x_T.shape[0] < components:
            raise ValueError(f"{x_T.shape[0]} degraded images cannot fit {components} mixture components")
        from sklearn.mixture import GaussianMixture as EM     # (third-party, imported on use: slow to import)
        from threadpoolctl import threadpool_limits          # (a scikit-learn dependency)
        flat = x_T.reshape(x_T.shape[0], -1).double().cpu().numpy()
        # one BLAS thread: small matrices, and several threads on a shared machine cost 30x (measured)
        with threadpool_limits(1):
            em = EM(n_components=components, covariance_type="full", reg_covar=reg_covar, random_state=seed,
                    max_iter=200).fit(flat)
        covs = torch.as_tensor(em.covariances_, dtype=torch.float64)
        return cls(torch.as_tensor(em.weights_, dtype=torch.float64), torch.as_tensor(em.means_, dtype=torch.float64),
                   torch.linalg.cholesky(covs), tuple(x_T.shape[1:]), noise)

    def sample(self, seeds: Sequence[int], dtype=torch.float32, device=None) -> Tensor:
        """`[len(seeds), *shape]` draws; sample i from its own generator seeded seeds[i]."""
        D = self.means.shape[1]
        out = []
        for s in seeds:
            g = torch.Generator().manual_seed(int(s))
            k = int(torch.multinomial(self.weights, 1, generator=g))
            z = torch.randn(D, generator=g, dtype=torch.float64)
            e = torch.randn(D, generator=g, dtype=torch.float64)
            out.append(self.means[k] + self.chols[k] @ z + self.noise * e)
        return torch.stack(out).reshape(len(out), *self.shape).to(dtype=dtype, device=device)
