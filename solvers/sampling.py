"""`sample`: every sampler behind one entry point, and the registry that defines them.

A sampler is one function plus one `register_sampler` call that declares its
options and their defaults; there is no other table. `sample()` does for every
registered sampler, a researcher's own included, the same things: argument
checks, the time grid, the prior draw or `x_T`, noise streams (`generator` or
per-sample `seeds`), NFE counting, `progress`, `return_trajectory`, `denoise`
and the `SampleInfo` report.

Two kinds of sampler function:

* fixed-grid (registered with `schedule="uniform" | "logsnr" | "quadratic" | "karras"`,
  the default grid its paper recommends):

      fn(sde, score, x, ts, noise, callback, **options) -> x

  `sde` is a quiet copy (no per-call time checks); `score(x, t [B])` counts NFE;
  `x` `[B, *dims]` is the state at `ts[0] = T`; `ts` `[steps + 1]` decreases
  from T to eps; `noise.randn()` is a standard normal shaped like x (honouring
  `seeds`); `callback(i, x)` must be called after step i with the state at
  `ts[i + 1]`. The registry adds the options `steps` (default `sde.N`),
  `schedule` and `rho` (default 7, used by "karras") to every such sampler and
  builds `ts` with `solvers.schedules.time_grid`.

* self-stepping (registered with `schedule=None`: adaptive `ode`, torchsde's `sde`):

      fn(sde, score, x, eps, noise, info, progress, return_trajectory, **options) -> x

  It integrates from T to `eps` itself and fills `info.steps`, `info.trajectory`,
  `info.times`, `info.extra`; it may record resolved options in `info.options`.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

from sde_lib import expand_as_batch

from ._common import (CountedScore, NoiseSource, SampleInfo, Timer, check_choice, check_eps, check_positive,
                      check_steps, quiet, tweedie_mean)
from .schedules import SCHEDULES, time_grid

#: Options every sampler takes from `sample()` itself; a sampler may not declare them.
SHARED_OPTIONS = ("eps", "denoise", "x_T", "generator", "seeds", "dtype", "device", "progress",
                  "return_trajectory", "observation", "recurrence")
#: Options the registry adds to every fixed-grid sampler.
GRID_OPTIONS = ("steps", "schedule", "rho")


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its function, declared options with defaults (for a
    fixed-grid sampler including `steps`, `schedule`, `rho`), default schedule
    (None: it does its own time stepping) and a one-line description."""
    name: str
    fn: Callable
    options: Mapping[str, Any]
    schedule: Optional[str]
    doc: str
    stepwise: bool = True

    def resampling_refusal(self) -> Optional[str]:
        """Why `recurrence > 1` (re-running the grid one interval at a time) cannot work with this
        sampler, or None if it can."""
        if not self.fixed_grid:
            return f"sampler {self.name!r} chooses its own steps; recurrence needs a fixed time grid"
        if not self.stepwise:
            return (f"sampler {self.name!r} is multistep (a step uses earlier steps' scores), so its grid "
                    f"cannot be re-run one interval at a time")
        return None

    @property
    def fixed_grid(self) -> bool:
        return self.schedule is not None


_REGISTRY: Dict[str, SamplerSpec] = {}
#: Read-only view name -> SamplerSpec of every registered sampler (`name in SAMPLERS`, `list(SAMPLERS)`).
SAMPLERS: Mapping[str, SamplerSpec] = MappingProxyType(_REGISTRY)


def register_sampler(name: str, fn: Callable, *, options: dict, schedule: Optional[str] = "uniform",
                     doc: str = "", stepwise: bool = True) -> SamplerSpec:
    """Add a sampler to `sample()` under `name`.

    Args:
        name:     the `sampler=` name; must not be registered already.
        fn:       the sampler function (see the module docstring for the two signatures).
        options:  `{option: default}` of the sampler's own keyword options (all of them:
                  `sample()` rejects any other). `None` defaults are the sampler's to fill.
                  Must not use a shared option name (`SHARED_OPTIONS`); a fixed-grid
                  sampler gets `steps`, `schedule`, `rho` from the registry and may only
                  override the default of `rho`.
        schedule: the default time grid of a fixed-grid sampler (one of
                  `solvers.schedules.SCHEDULES`), or None for a self-stepping sampler.
        doc:      one line for listings (default: the first line of `fn.__doc__`).
        stepwise: a fixed-grid sampler whose step from ts[i] to ts[i+1] uses only the state at
                  ts[i] (False for multistep solvers); `recurrence > 1` needs it.

    A sampler must update x by combining x, scores and noise with scalar (per-sample)
    coefficients, as all of Song et al.'s, EDM's and the exponential integrators do: that is what
    makes the replacement hook of inverse problems (`observation=`) exact for it.

    Returns the `SamplerSpec`. Example (a researcher's own sampler)::

        def my_euler(sde, score, x, ts, noise, callback, *, gain):
            rsde = sde.reverse(score, probability_flow=True)
            for i in range(len(ts) - 1):
                drift, _ = rsde.sde(x, ts[i].expand(x.shape[0]))
                x = x - gain * drift * (ts[i] - ts[i + 1])
                callback(i, x)
            return x

        register_sampler("my_euler", my_euler, options={"gain": 1.0}, schedule="logsnr")
        x, info = sample(sde, score_fn, (64, 2), "my_euler", steps=20, gain=1.0)
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"sampler name must be an identifier string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"sampler {name!r} is already registered (unregister_sampler({name!r}) first)")
    if not callable(fn):
        raise ValueError(f"fn for sampler {name!r} must be callable, got {type(fn).__name__}")
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"options for sampler {name!r} must be a dict {{name: default}}, got {options!r}")
    clash = sorted(set(options) & set(SHARED_OPTIONS))
    if clash:
        raise ValueError(f"options {clash} of sampler {name!r} are shared options of sample(); rename them")
    opts = dict(options)
    if schedule is not None:
        check_choice("schedule", schedule, SCHEDULES)
        reserved = sorted(set(options) & {"steps", "schedule"})
        if reserved:
            raise ValueError(f"options {reserved} of fixed-grid sampler {name!r} are added by the registry; "
                             f"declare the default grid with schedule=")
        opts = {"steps": None, "schedule": schedule, "rho": 7.0, **opts}
    if not isinstance(doc, str):
        raise ValueError(f"doc must be a string, got {type(doc).__name__}")
    doc = doc or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
    spec = SamplerSpec(name, fn, MappingProxyType(opts), schedule, doc, bool(stepwise))
    _REGISTRY[name] = spec
    return spec


def unregister_sampler(name: str) -> SamplerSpec:
    """Remove a registered sampler (e.g. to re-register a changed version); returns its spec."""
    check_choice("sampler", name, SAMPLERS)
    return _REGISTRY.pop(name)


def sample(sde, score_fn, shape, sampler: str = "euler_maruyama", *, eps: Optional[float] = None,
           denoise: bool = False, x_T: Optional[torch.Tensor] = None,
           generator: Optional[torch.Generator] = None, seeds: Optional[Sequence[int]] = None,
           dtype: Optional[torch.dtype] = None, device=None, progress: bool = False,
           return_trajectory: bool = False, observation: Optional["Observation"] = None, recurrence: int = 1,
           **options):
    """Draw samples `[B, *dims]` from the model defined by `sde` and `score_fn`.

    Args:
        sde:       a `sde_lib.SDE`.
        score_fn:  `score_fn(x [B, *dims], t [B]) -> [B, *dims]`, e.g. a trained
                   network's score or `GaussianMixture.score_fn(sde)`.
        shape:     `(B, *dims)`; must agree with `x_T.shape` when both are given
                   (shape=None takes it from x_T).
        sampler:   a name in `SAMPLERS` (`solvers.sampler_table()` lists them with their
                   options and defaults). Fixed-grid samplers take `steps` (time intervals,
                   default `sde.N`), `schedule` and `rho`; the others are documented by
                   their registration.
        eps:       end time (default `sde.eps`), in (0, T).
        denoise:   finish with Tweedie's denoising step x <- (x + s(eps)^2 score(x, eps)) / m(eps)
                   (= x + s^2 score for VE), +1 NFE.
        x_T:       start from this finite `[B, *dims]` state at time T instead of a prior draw.
        generator: torch.Generator for all noise (prior and steps). A generator on another
                   device than the samples draws there and the noise is moved.
        seeds:     one int per sample: sample i gets its own noise stream, so it is the
                   same drawn alone or in any batch (exclusive with `generator`).
        dtype, device: of the computation and output (default: x_T's, else torch defaults);
                   dtype must be a floating dtype.
        progress:  show a tqdm bar over steps (score evaluations for adaptive solvers).
        return_trajectory: keep the state after every step in `info.trajectory`.
        observation: an `Observation(known, project)` for inverse problems by replacement
                   (`solvers.inpaint`): the score sees the state with its observed part P x
                   replaced by the forward-diffused observation, and the output has P x = P known.
        recurrence: k >= 1; k > 1 re-runs each grid interval k times with a forward re-noising in
                   between (RePaint), one interval at a time (`SamplerSpec.resampling_refusal`).

    Returns:
        (x, info): the samples and a `SampleInfo` (nfe, steps, options, seconds, ...).
    """
    spec = SAMPLERS.get(sampler) if isinstance(sampler, str) else None
    if spec is None:
        check_choice("sampler", sampler, list(SAMPLERS))
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for sampler {sampler!r}; "
                         f"valid options: {sorted(spec.options)}")
    if not callable(score_fn):
        raise ValueError(f"score_fn must be callable score_fn(x, t), got {type(score_fn).__name__}")
    opts = {**spec.options, **options}
    eps = check_eps(sde, eps)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype (e.g. torch.float32), got {dtype!r}")

    if x_T is not None:
        if not torch.is_tensor(x_T):
            raise ValueError(f"x_T must be a tensor, got {type(x_T).__name__}")
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} disagrees with x_T.shape {tuple(x_T.shape)}")
        shape = tuple(x_T.shape)
        dtype = dtype or (x_T.dtype if x_T.is_floating_point() else None)
        device = device or x_T.device
    if shape is None:
        raise ValueError("give shape (B, *dims) or x_T")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s <= 0 for s in shape):
        raise ValueError(f"shape must be (B, *dims) with positive sizes, got {shape}")
    if x_T is not None and x_T.numel() and x_T.is_floating_point():
        bad = ~torch.isfinite(x_T.reshape(shape[0], -1)).all(dim=1)
        if bad.any():
            raise ValueError(f"x_T has NaN/inf values in samples {bad.nonzero().flatten().tolist()[:10]}")
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.empty(0).device

    ts = None
    if spec.fixed_grid:
        opts["steps"] = check_steps(sde.N if opts["steps"] is None else opts["steps"])
        check_choice("schedule", opts["schedule"], SCHEDULES)
        opts["rho"] = check_positive("rho", opts["rho"])
        ts = time_grid(sde, opts["steps"], schedule=opts["schedule"], eps=eps, rho=opts["rho"],
                       dtype=dtype, device=device)

    recurrence = check_steps(recurrence, "recurrence")
    if recurrence > 1 and spec.resampling_refusal():
        raise ValueError(f"recurrence={recurrence}: {spec.resampling_refusal()}")
    if observation is not None:
        observation.check(shape)
    counted = CountedScore(score_fn)
    noise = NoiseSource(shape, dtype, device, generator=generator, seeds=seeds)
    info = SampleInfo(sampler=sampler, options={"eps": eps, "denoise": denoise, **opts})
    if recurrence > 1:
        info.options["recurrence"] = recurrence
    kwargs = {k: v for k, v in opts.items() if not (spec.fixed_grid and k in GRID_OPTIONS)}
    with Timer() as timer, torch.no_grad():
        x = noise.prior(sde) if x_T is None else x_T.to(dtype=dtype, device=device).clone()
        score, known_at = counted, None
        if observation is not None:
            # fixed grid: a fresh forward draw of the observation at every score call (Song et al.'s
            # replacement); self-stepping: one forward path, so an adaptive ODE's right side stays smooth
            known_at = observation.path(quiet(sde), noise.randn if spec.fixed_grid else noise.randn())
            score = observation.replaced_score(counted, known_at)
            x = observation.replace(x, known_at(torch.full((shape[0],), sde.T, dtype=dtype, device=device)))
        if recurrence > 1:
            x = _run_resampled(spec, sde, score, x, ts, noise, info, recurrence, known_at, observation, kwargs)
        elif spec.fixed_grid:
            x = _run_grid(spec, sde, score, x, ts, noise, info, progress, return_trajectory, kwargs)
        else:
            x = spec.fn(sde, score, x, eps, noise, info, progress, return_trajectory, **kwargs)
        if denoise:
            x = tweedie(quiet(sde), score, x, eps)
        if observation is not None:
            x = observation.replace(x, observation.known.to(dtype=x.dtype, device=x.device))
    info.nfe = counted.nfe
    info.seconds = timer.seconds
    return x, info


def _run_grid(spec, sde, score, x, ts, noise, info, progress, return_trajectory, kwargs):
    steps = ts.shape[0] - 1
    traj = [x] if return_trajectory else None
    calls = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=spec.name)

    def callback(i, x_next):
        if i != len(calls):
            raise RuntimeError(f"sampler {spec.name!r} called callback({i}, x) after {len(calls)} steps; "
                               f"expected callback({len(calls)}, x)")
        calls.append(i)
        if traj is not None:
            traj.append(x_next)
        if bar is not None:
            bar.update(1)

    try:
        x = spec.fn(quiet(sde), score, x, ts, noise, callback, **kwargs)
    finally:
        if bar is not None:
            bar.close()
    if len(calls) != steps:
        raise RuntimeError(f"sampler {spec.name!r} reported {len(calls)} steps through callback, "
                           f"expected {steps} (one per grid interval)")
    info.steps = steps
    if traj is not None:
        info.trajectory, info.times = torch.stack(traj), ts
    return x


@dataclass(frozen=True)
class Observation:
    """Observed data of an inverse problem: P x = P known, with `project(x) = P x` an orthogonal
    projector (P^2 = P = P^T) acting on `[B, *dims]` (a mask, a grey projection, ...)."""
    known: torch.Tensor
    project: Callable[[torch.Tensor], torch.Tensor]

    def check(self, shape) -> None:
        if not torch.is_tensor(self.known) or tuple(self.known.shape) != tuple(shape):
            raise ValueError(f"observation.known must be a tensor of the samples' shape {tuple(shape)}, got "
                             f"{tuple(self.known.shape) if torch.is_tensor(self.known) else type(self.known).__name__}")

    def replace(self, x, y):
        """x with its observed part replaced by y's: x - P x + P y."""
        return x - self.project(x) + self.project(y)

    def path(self, sde, z):
        """t -> m(t) known + s(t) z, the observation diffused forward to t: `z` a fixed draw (one
        path) or a function drawing a fresh N(0, I) at every call."""
        def known_at(t):
            draw = z() if callable(z) else z
            y = self.known.to(dtype=draw.dtype, device=draw.device)
            m, s = sde.marginal_coeffs(t)
            return expand_as_batch(m, y) * y + expand_as_batch(s, y) * draw
        return known_at

    def replaced_score(self, score, known_at):
        """The score evaluated at the state with its observed part replaced by the path at t."""
        return lambda x, t: score(self.replace(x, known_at(t)), t)


def _run_resampled(spec, sde, score, x, ts, noise, info, k, known_at, observation, kwargs):
    """RePaint's resampling: each interval ts[i] -> ts[i+1] is run k times by the sampler on the
    two-point grid, the observed part replaced after each run, and re-noised back to ts[i] with the
    exact forward kernel x_t = (m_t / m_n) x_n + sqrt(s_t^2 - (m_t / m_n)^2 s_n^2) z in between."""
    qsde = quiet(sde)
    B = x.shape[0]
    for i in range(ts.shape[0] - 1):
        t, t_next = ts[i].expand(B), ts[i + 1].expand(B)
        for r in range(k):
            x = spec.fn(qsde, score, x, ts[i:i + 2], noise, lambda j, x_next: None, **kwargs)
            if observation is not None:
                x = observation.replace(x, known_at(t_next))
            if r + 1 < k:
                m_t, s_t = qsde.marginal_coeffs(t)
                m_n, s_n = qsde.marginal_coeffs(t_next)
                a = m_t / m_n
                x = expand_as_batch(a, x) * x + expand_as_batch((s_t ** 2 - (a * s_n) ** 2).clamp_min(0).sqrt(), x) \
                    * noise.randn()
    info.steps = (ts.shape[0] - 1) * k
    return x


def tweedie(sde, score_fn, x, eps):
    """E[x_0 | x_eps] = (x + s(eps)^2 score(x, eps)) / m(eps) for the Gaussian kernel."""
    t = torch.full((x.shape[0],), eps, dtype=x.dtype, device=x.device)
    m, s = sde.marginal_coeffs(t)
    return tweedie_mean(x, score_fn(x, t), m, s)


def sampler_table() -> str:
    """A plain-text listing of every registered sampler, its default grid and options."""
    rows = []
    for name, spec in SAMPLERS.items():
        opts = ", ".join(f"{k}={v!r}" for k, v in spec.options.items() if k not in ("schedule",))
        grid = f"grid {spec.schedule}" if spec.fixed_grid else "own stepping"
        rows.append(f"{name:18s} {grid:16s} {opts}\n{'':18s} {spec.doc}")
    return "\n".join(rows)

