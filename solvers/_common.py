"""Shared pieces of the samplers: the run report, the NFE counter, argument
checks, the time grid and the per-sample noise streams."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import torch

from sde_lib import expand_as_batch

Tensor = torch.Tensor


@dataclass
class SampleInfo:
    """What a sampler did.

    Attributes:
        sampler:    the sampler name.
        nfe:        score_fn calls actually made (a batched call counts 1).
        steps:      steps taken (for adaptive ODE/SDE solvers: accepted +
                    rejected steps are not separated; `nfe` is the honest cost).
        options:    the options in effect (defaults filled in).
        seconds:    wall time of the whole call.
        trajectory: `[n_times, B, *dims]` states if `return_trajectory`, else None.
        times:      `[n_times]` times of the trajectory states (decreasing).
        extra:      sampler-specific facts (e.g. `clamped` for the ODE).
    """
    sampler: str
    nfe: int = 0
    steps: int = 0
    options: Dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    trajectory: Optional[Tensor] = None
    times: Optional[Tensor] = None
    extra: Dict[str, Any] = field(default_factory=dict)


class CountedScore:
    """Wraps a score_fn and counts its calls: `nfe` = number of (batched) calls.

    It also optionally records every time it is called with (`record_times`),
    which the tests use to check that no solver leaves [eps, T].
    """

    def __init__(self, score_fn: Callable[[Tensor, Tensor], Tensor], record_times: bool = False):
        self.score_fn = score_fn
        self.nfe = 0
        self.times: Optional[List[Tensor]] = [] if record_times else None

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        if self.times is not None:
            self.times.append(t.detach().clone())
        return self.score_fn(x, t)


def quiet(sde):
    """A shallow copy of `sde` that skips the per-call time-range check.

    The samplers validate their whole time grid once up front, so the
    one-reduction-per-call check (a host synchronisation on GPU) is not
    needed inside the loop. The user's object is left untouched.
    """
    if not getattr(sde, "check_time", False):
        return sde
    q = copy.copy(sde)
    q.check_time = False
    return q


def check_steps(steps, name: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"{name} must be a positive int, got {steps!r}")
    return steps


def check_eps(sde, eps) -> float:
    eps = sde.eps if eps is None else eps
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not (0.0 < eps < sde.T):
        raise ValueError(f"eps must lie in (0, T) = (0, {sde.T}), got {eps!r}")
    return float(eps)


def check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_choice(kind: str, name, valid: Sequence[str]) -> str:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(valid)}")
    return name


class NoiseSource:
    """Standard normal draws of shape `[B, *dims]` for a sampler, on `device`.

    With `generator` (or none) every draw is one `torch.randn` for the whole
    batch; a generator on another device than `device` (e.g. a CPU generator for
    CUDA samples) draws on its own device and the draw is moved, so a given
    generator gives the same noise on every device. With `seeds` (one int per
    sample), sample i has its own CPU `torch.Generator` seeded with seeds[i], so
    its noise, and therefore its output, does not depend on the batch it is drawn
    in, nor on the device. To keep the Python loop over generators off the
    per-step path, each generator draws a block of `chunk` future draws at a time
    (moved to `device` as one tensor); `chunk` depends only on the per-sample
    size, never on B, so the streams are identical alone or in a batch.
    """

    def __init__(self, shape, dtype, device, generator: Optional[torch.Generator] = None,
                 seeds: Optional[Sequence[int]] = None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.empty(0).device
        self.generator = generator
        self.draws = 0
        self.generators = None
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seeds is not None:
            seeds = list(seeds)
            if len(seeds) != self.shape[0]:
                raise ValueError(f"seeds must have one entry per sample (batch size {self.shape[0]}), "
                                 f"got {len(seeds)}")
            for s in seeds:
                if isinstance(s, bool) or not isinstance(s, int):
                    raise ValueError(f"seeds must be ints, got {s!r}")
            if generator is not None:
                raise ValueError("give either generator or seeds, not both")
            self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
            per_sample = max(1, math.prod(self.shape[1:]))
            self.chunk = max(1, min(64, (1 << 16) // per_sample))
            self._buffer = None
            self._pos = self.chunk

    def _randn(self, shape, generator) -> Tensor:
        here = generator.device if generator is not None else self.device
        z = torch.randn(shape, generator=generator, dtype=self.dtype, device=here)
        return z if here == self.device else z.to(self.device)

    def randn(self) -> Tensor:
        self.draws += 1
        if self.generators is None:
            return self._randn(self.shape, self.generator)
        if self._pos == self.chunk:
            dims = self.shape[1:]
            self._buffer = torch.stack([torch.randn((self.chunk, *dims), generator=g, dtype=self.dtype)
                                        for g in self.generators]).to(self.device)
            self._pos = 0
        z = self._buffer[:, self._pos]
        self._pos += 1
        return z

    def prior(self, sde) -> Tensor:
        """x_T from the prior N(0, prior_std^2 I)."""
        return sde.prior_std() * self.randn()


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def random_device(generator: Optional[torch.Generator], default) -> torch.device:
    """Where a draw with `generator` must happen: the generator's own device (torch refuses a
    generator of another device), else `default`. Draw there, then move the result."""
    return generator.device if generator is not None else torch.device(default)


def hutchinson_probes(shape, noise: str, generator, dtype, device) -> Tensor:
    """Probes of `shape` for Hutchinson's trace estimator: Rademacher (+-1) or standard normal,
    drawn on the generator's device and moved to `device`."""
    at = random_device(generator, device)
    if noise == "rademacher":
        return (torch.randint(0, 2, tuple(shape), generator=generator, device=at).to(dtype) * 2 - 1).to(device)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=at).to(device)


def score_and_divergence(score_fn, x: Tensor, t: Tensor, probes: Optional[Tensor] = None):
    """(score, div_x score, VJPs spent) at `x [B, *dims]`, `t [B]`, both detached.

    probes None: the exact divergence, one VJP per coordinate (D of them); probes `[K, B, *dims]`:
    Hutchinson's estimate mean_k v_k . (d score / dx) v_k (K VJPs)."""
    B = x.shape[0]
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        score = score_fn(xr, t)
        div = torch.zeros(B, dtype=x.dtype, device=x.device)
        if probes is None:
            flat = score.reshape(B, -1)
            D = flat.shape[1]
            for j in range(D):
                row = torch.autograd.grad(flat[:, j].sum(), xr, retain_graph=j < D - 1)[0]
                div = div + row.reshape(B, -1)[:, j]
            return score.detach(), div, D
        K = probes.shape[0]
        for k in range(K):
            vjp = torch.autograd.grad(score, xr, probes[k], retain_graph=k < K - 1)[0]
            div = div + (vjp * probes[k]).reshape(B, -1).sum(1)
        return score.detach(), div / K, K


class Estimate(NamedTuple):
    """A Monte Carlo estimate and its standard error: the result of the metric estimators (dlogp, KID).

    The project's estimators share one convention: `.value`, `.stderr` (None where the estimator
    has none), `.nfe` (score evaluations spent; 0 for metrics of sample sets) and `.info` (details).
    `log_likelihood` and `elbo` return richer dataclasses with the same four names; a sampler
    returns `(x, SampleInfo)` with `info.nfe`. `se` is the historical name of `stderr`.
    """
    value: float
    se: float

    @property
    def stderr(self) -> float:
        return self.se

    @property
    def nfe(self) -> int:
        return 0

    @property
    def info(self) -> dict:
        return {}


def tweedie_mean(x: Tensor, score: Tensor, m: Tensor, s: Tensor) -> Tensor:
    """Tweedie's posterior mean under the Gaussian kernel x_t = m x_0 + s z:

        x0_hat = E[x_0 | x_t] = (x_t + s^2 score(x_t, t)) / m.

    x, score `[B, *dims]`; m, s `[B]` (expanded over dims here) or already broadcastable to x.
    The one place this formula is written (denoising, DDIM, universal guidance).
    """
    if m.dim() == 1 and x.dim() > 1:
        m, s = expand_as_batch(m, x), expand_as_batch(s, x)
    return (x + s ** 2 * score) / m
