"""The probability-flow ODE dx/dt = f(x, t) - 1/2 g(t)^2 score(x, t) through torchdiffeq.

Time guard: the score is only ever evaluated at times in [eps, T]. Two
mechanisms make sure of it:

* adaptive methods get torchdiffeq's `step_t=[end]` option, which forces the
  solver to land exactly on the end point instead of stepping past it and
  interpolating back (its default), so no stage is placed beyond the end;
* every evaluation clamps t to [min(t0, t1), max(t0, t1)] as a safety net
  (the initial step-size heuristic of adaptive methods evaluates one trial
  point at t0 + h0). `info.extra["clamped"]` counts the evaluations that
  needed it; with `step_t` it is 0 in our tests.

Error norm (`norm=`, torchdiffeq's `norm` option; `bench/ode_accuracy.py`): a step is
accepted when norm(err / (atol + rtol |y|)) <= 1. "batch" (torchdiffeq's and scipy's
default for one tensor) is the RMS over every entry of the whole batch, so one sample's
error is diluted by the others; "sample" takes each sample's own RMS (over x and, for
the likelihood, its log-density increment) and the worst sample decides, so every
sample meets the tolerance whatever else is in the batch; "mixed" is torchdiffeq's
default for the likelihood's (x, delta) tuple, max(RMS(x), RMS(delta)) over the batch.
The steps are still shared by the batch (torchdiffeq has one time per solve), so a
sample's result changes with its batch at the level of the tolerance, not beyond.

Error estimate (`method="rk45"`, the default; `bench/ode_accuracy.py`): torchdiffeq's
`dopri5` takes Dormand-Prince 5(4) steps but estimates the local error with Shampine's
embedded solution, whose error weights are exactly 2/3 of Dormand-Prince's own
(b5 - b4*; tested against torchdiffeq's tableau). The estimate is then 1.5x smaller, the
solver takes longer steps, and at equal rtol/atol it is 1.5-2.7x less accurate than
scipy's RK45 (the reference implementation's solver) on the mixture oracle. "rk45" is
the same dopri5 integration with its error norm multiplied by 3/2, i.e. with Dormand and
Prince's estimate as in scipy's RK45 and MATLAB's ode45; "dopri5" keeps torchdiffeq's.

Controller: torchdiffeq never shrinks the step after an accepted one (scipy does when the
error ratio is above 0.59) and may grow it right after a rejection (scipy does not), so
with the same safety factor 0.9 it rejects more steps and stays 1.3-1.4x less accurate
than scipy at equal NFE. Neither rule is an option; the safety factor is, and "rk45" uses 0.7:
on 6 problems x 4 tolerances (`bench/ode_accuracy.py`, tuned on mixture seeds 0 and 5,
checked on held-out seeds 11 and 12) its error at equal tolerance is 0.4-0.85x scipy's at
1.05-1.07x its NFE. `controller=` passes torchdiffeq's controller options through.
"""
from __future__ import annotations

import torch

from ._common import CountedScore, SampleInfo, Timer, check_choice, check_eps, check_positive, check_steps, quiet

ADAPTIVE_METHODS = ("rk45", "dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")
METHODS = ADAPTIVE_METHODS + FIXED_METHODS
ODE_NORMS = ("sample", "batch", "mixed")
# Our method names that are torchdiffeq methods with another error estimate and controller: name ->
# (torchdiffeq method, factor on the error norm, controller options). Dormand-Prince's b5 - b4* is
# 3/2 x Shampine's (module docstring); safety 0.7 instead of 0.9 (module docstring, "Controller").
RESCALED = {"rk45": ("dopri5", 1.5, {"safety": 0.7})}
CONTROLLER_OPTIONS = ("safety", "ifactor", "dfactor", "first_step", "max_num_steps")


def adaptive_setup(method: str, norm: str, batch_size: int, t_end: float, controller=None):
    """(torchdiffeq method name, its options) for an adaptive `method`: the error norm (scaled for
    "rk45"), `step_t` landing exactly on the end time, the method's controller defaults and then
    `controller` (torchdiffeq's safety / ifactor / dfactor / first_step / max_num_steps)."""
    name, scale, defaults = RESCALED.get(method, (method, 1.0, {}))
    controller = dict(controller or {})
    unknown = sorted(set(controller) - set(CONTROLLER_OPTIONS))
    if unknown:
        raise ValueError(f"unknown ODE controller option(s) {unknown}; expected some of {list(CONTROLLER_OPTIONS)}")
    return name, {"step_t": torch.tensor([t_end], dtype=torch.float64), "norm": error_norm(norm, batch_size, scale),
                  **defaults, **controller}


def error_norm(kind: str, batch_size: int, scale: float = 1.0):
    """The torchdiffeq `norm` option for a state `[B, *dims]` or a tuple of `[B, ...]` tensors,
    multiplied by `scale` (the error-estimate correction of `RESCALED` methods)."""
    check_choice("ODE error norm", kind, ODE_NORMS)

    def rows(state):
        parts = state if isinstance(state, (tuple, list)) else (state,)
        return [p.reshape(batch_size, -1) for p in parts]

    def norm(state):
        r = rows(state)
        if kind == "sample":
            value = torch.cat(r, dim=1).pow(2).mean(dim=1).sqrt().max()
        elif kind == "batch":
            value = torch.cat(r, dim=1).pow(2).mean().sqrt()
        else:
            value = torch.stack([p.pow(2).mean().sqrt() for p in r]).max()
        return value * scale if scale != 1.0 else value
    return norm


class GuardedTime:
    """Clamp a solver's scalar time to [lo, hi] and count (without host sync) how often it had to."""

    def __init__(self, t0: float, t1: float):
        self.lo, self.hi = min(t0, t1), max(t0, t1)
        self.clamped = 0

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        outside = (t < self.lo) | (t > self.hi)
        self.clamped = self.clamped + outside.to(torch.int64)
        return torch.clamp(t, self.lo, self.hi)

    @property
    def n_clamped(self) -> int:
        return int(self.clamped)


def odeint_flow(sde, score, x, t0: float, t1: float, method: str = "rk45", rtol: float = 1e-5,
                atol: float = 1e-5, steps=None, n_out: int = 2, progress: bool = False, norm: str = "batch",
                controller=None):
    """Integrate the probability-flow ODE from t0 to t1 (either direction) with torchdiffeq.

    `norm` ("sample", "batch", "mixed"): the error norm of adaptive methods (module docstring);
    `controller`: torchdiffeq step-size options of adaptive methods (`adaptive_setup`).

    Returns (states `[n_times, B, *dims]`, times `[n_times]`, guard). Fixed-grid
    methods take `steps` uniform steps and return every grid state; adaptive
    methods return `n_out` equally spaced times (interpolated, no extra NFE).
    """
    from torchdiffeq import odeint

    check_choice("ODE method", method, METHODS)
    rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
    qsde = quiet(sde)
    rsde = qsde.reverse(score, probability_flow=True)
    guard = GuardedTime(t0, t1)
    B = x.shape[0]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(desc=f"ode/{method}", unit="nfe")

    def func(t, y):
        tb = guard(t).to(y.dtype).expand(B)
        if bar is not None:
            bar.update(1)
        return rsde.sde(y, tb)[0]

    if method in FIXED_METHODS:
        steps = check_steps(steps)
        times = torch.linspace(t0, t1, steps + 1, dtype=torch.float64, device=x.device)
        name, options = method, None
    else:
        times = torch.linspace(t0, t1, max(2, n_out), dtype=torch.float64, device=x.device)
        name, options = adaptive_setup(method, norm, B, t1, controller)
    try:
        ys = odeint(func, x, times, method=name, rtol=rtol, atol=atol, options=options)
    finally:
        if bar is not None:
            bar.close()
    return ys, times.to(x.dtype), guard


def run_ode(sde, score, x, eps, noise, info, opts, progress, return_trajectory):
    method = opts["method"]
    check_choice("ODE method", method, METHODS)
    if method in FIXED_METHODS:
        opts["steps"] = check_steps(sde.N if opts["steps"] is None else opts["steps"])
    ys, times, guard = odeint_flow(sde, score, x, sde.T, eps, method, opts["rtol"], opts["atol"],
                                   steps=opts["steps"], n_out=101 if return_trajectory else 2,
                                   progress=progress, norm=opts["norm"])
    info.steps = opts["steps"] if method in FIXED_METHODS else None
    info.extra["clamped"] = guard.n_clamped
    if return_trajectory:
        info.trajectory, info.times = ys, times
    return ys[-1]


def encode(sde, score_fn, x, eps=None, method="rk45", rtol=1e-5, atol=1e-5, steps=None):
    """Map data x (at time eps) to its latent z at time T along the probability-flow ODE.

    Returns (z, info) with info.nfe the score evaluations made.
    """
    eps = check_eps(sde, eps)
    _check_finite("x", x)
    counted = CountedScore(score_fn)
    with Timer() as timer, torch.no_grad():
        ys, _, guard = odeint_flow(sde, counted, x, eps, sde.T, method, rtol, atol,
                                   steps=sde.N if steps is None else steps)
    info = SampleInfo("encode", nfe=counted.nfe, steps=steps or 0, seconds=timer.seconds,
                      options={"method": method, "rtol": rtol, "atol": atol, "eps": eps},
                      extra={"clamped": guard.n_clamped})
    return ys[-1], info


def decode(sde, score_fn, z, eps=None, method="rk45", rtol=1e-5, atol=1e-5, steps=None):
    """Map a latent z at time T back to data at time eps along the probability-flow ODE.

    Returns (x, info); equals `sample(..., sampler="ode", x_T=z)` (the same integration).
    """
    eps = check_eps(sde, eps)
    _check_finite("z", z)
    counted = CountedScore(score_fn)
    with Timer() as timer, torch.no_grad():
        ys, _, guard = odeint_flow(sde, counted, z, sde.T, eps, method, rtol, atol,
                                   steps=sde.N if steps is None else steps)
    info = SampleInfo("decode", nfe=counted.nfe, steps=steps or 0, seconds=timer.seconds,
                      options={"method": method, "rtol": rtol, "atol": atol, "eps": eps},
                      extra={"clamped": guard.n_clamped})
    return ys[-1], info


def _check_finite(name, x):
    if not torch.is_tensor(x) or x.dim() < 2:
        raise ValueError(f"{name} must be a tensor [B, *dims], got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bad.any():
        raise ValueError(f"{name} has NaN/inf values in samples {bad.nonzero().flatten().tolist()[:10]}")
