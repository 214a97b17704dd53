"""`sample`: every sampler behind one entry point.

All samplers integrate from T down to eps on the uniform grid
t_i = T - i (T - eps) / steps, i = 0..steps, unless they are adaptive
(`ode` with an adaptive method, `sde` with `adaptive=True`).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from sde_lib import expand_as_batch

from ._common import (CountedScore, NoiseSource, SampleInfo, Timer, check_choice, check_eps,
                      check_positive, check_steps, quiet, time_grid)
from .correctors import CORRECTORS
from .predictors import PREDICTORS

# sampler name -> {option: default}; `None` defaults are filled in per call.
_OPTIONS = {
    "euler_maruyama": {"steps": None},
    "pc": {"steps": None, "predictor": "reverse_diffusion", "corrector": "langevin", "snr": 0.16,
           "corrector_steps": 1, "step_size": 0.2},
    "ancestral": {"steps": None},
    "reverse_diffusion": {"steps": None},
    "annealed_langevin": {"steps": None, "corrector_steps": 1, "step_size": 0.2},
    "ddim": {"steps": None},
    "heun": {"steps": None},
    "ode": {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5, "steps": None},
    "sde": {"method": "euler", "steps": None, "dt": None, "adaptive": False, "rtol": 1e-5, "atol": 1e-4,
            "brownian": None},
}
SAMPLERS = tuple(_OPTIONS)


def sample(sde, score_fn, shape, sampler: str = "euler_maruyama", *, eps: Optional[float] = None,
           denoise: bool = False, x_T: Optional[torch.Tensor] = None,
           generator: Optional[torch.Generator] = None, seeds: Optional[Sequence[int]] = None,
           dtype: Optional[torch.dtype] = None, device=None, progress: bool = False,
           return_trajectory: bool = False, **options):
    """Draw samples `[B, *dims]` from the model defined by `sde` and `score_fn`.

    Args:
        sde:       a `sde_lib.SDE`.
        score_fn:  `score_fn(x [B, *dims], t [B]) -> [B, *dims]`, e.g. a trained
                   network's score or `GaussianMixture.score_fn(sde)`.
        shape:     `(B, *dims)`; must agree with `x_T.shape` when both are given
                   (shape=None takes it from x_T).
        sampler:   one of `SAMPLERS`:
                   "euler_maruyama" (reverse SDE, options: steps),
                   "pc" (predictor-corrector; predictor in `PREDICTORS`, corrector in
                   `CORRECTORS`, snr, corrector_steps, step_size, steps),
                   "ancestral" (= pc with predictor="ancestral", corrector="none"),
                   "reverse_diffusion" (= pc with predictor="reverse_diffusion", corrector="none"),
                   "annealed_langevin" (= pc with predictor="none", corrector="annealed_langevin":
                   NCSN; steps noise levels x corrector_steps, step_size),
                   "ddim" (deterministic DDIM step, exact for a Gaussian kernel; steps),
                   "heun" (2nd-order Heun on the probability-flow ODE, 2 NFE/step; steps),
                   "ode" (probability-flow ODE with torchdiffeq; method, rtol, atol, steps
                   for fixed-grid methods),
                   "sde" (reverse SDE with torchsde; method, steps or dt, adaptive, rtol, atol,
                   brownian="interval"|"stream").
        eps:       end time (default `sde.eps`), in (0, T).
        denoise:   finish with Tweedie's denoising step x <- (x + s(eps)^2 score(x, eps)) / m(eps)
                   (= x + s^2 score for VE), +1 NFE.
        x_T:       start from this `[B, *dims]` state at time T instead of a prior draw.
        generator: torch.Generator for all noise (prior and steps).
        seeds:     one int per sample: sample i gets its own noise stream, so it is the
                   same drawn alone or in any batch (exclusive with `generator`).
        dtype, device: of the computation and output (default: x_T's, else torch defaults).
        progress:  show a tqdm bar over steps (score evaluations for adaptive solvers).
        return_trajectory: keep the state after every step in `info.trajectory`.

    Returns:
        (x, info): the samples and a `SampleInfo` (nfe, steps, options, seconds, ...).
    """
    check_choice("sampler", sampler, SAMPLERS)
    unknown = set(options) - set(_OPTIONS[sampler])
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for sampler {sampler!r}; "
                         f"valid options: {sorted(_OPTIONS[sampler])}")
    opts = dict(_OPTIONS[sampler])
    opts.update(options)
    eps = check_eps(sde, eps)

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
    dtype = dtype or torch.get_default_dtype()

    counted = CountedScore(score_fn)
    noise = NoiseSource(shape, dtype, device, generator=generator, seeds=seeds)
    info = SampleInfo(sampler=sampler, options={"eps": eps, "denoise": denoise, **opts})
    with Timer() as timer, torch.no_grad():
        x = noise.prior(sde) if x_T is None else x_T.to(dtype=dtype, device=device).clone()
        run = _RUNNERS[sampler]
        x = run(sde, counted, x, eps, noise, info, opts, progress, return_trajectory)
        if denoise:
            x = tweedie(quiet(sde), counted, x, eps)
    info.options = {"eps": eps, "denoise": denoise, **opts}
    info.nfe = counted.nfe
    info.seconds = timer.seconds
    return x, info


def tweedie(sde, score_fn, x, eps):
    """E[x_0 | x_eps] = (x + s(eps)^2 score(x, eps)) / m(eps) for the Gaussian kernel."""
    t = torch.full((x.shape[0],), eps, dtype=x.dtype, device=x.device)
    m, s = sde.marginal_coeffs(t)
    return (x + expand_as_batch(s ** 2, x) * score_fn(x, t)) / expand_as_batch(m, x)


def _progress(iterable, enabled, **kw):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, **kw)


def _steps(sde, opts):
    steps = sde.N if opts.get("steps") is None else opts["steps"]
    opts["steps"] = check_steps(steps)
    return opts["steps"]


def _grid_loop(sde, x, eps, info, opts, progress, return_trajectory, step_fn):
    """Run `x = step_fn(x, t, dt, i)` over the uniform grid from T to eps."""
    steps = _steps(sde, opts)
    grid = time_grid(sde.T, eps, steps, x.dtype, x.device)
    dt = (sde.T - eps) / steps
    B = x.shape[0]
    traj = [x] if return_trajectory else None
    for i in _progress(range(steps), progress, desc=info.sampler):
        x = step_fn(x, grid[i].expand(B), dt, i)
        if traj is not None:
            traj.append(x)
    info.steps = steps
    if traj is not None:
        info.trajectory, info.times = torch.stack(traj), grid
    return x


def _run_pc(sde, score, x, eps, noise, info, opts, progress, return_trajectory):
    """Predictor-corrector sampling (Song et al. 2021, Algorithms 2 and 3).

    Order within a step i (grid t_{i-1} > t_i): the predictor moves
    x from t_{i-1} to t_i, then `corrector_steps` corrector steps act at t_i,
    as in the paper's algorithms (predictor first, corrector at the new level).
    The first corrector step therefore acts at t_1, the last at eps.
    """
    predictor = check_choice("predictor", opts["predictor"], PREDICTORS)
    corrector = check_choice("corrector", opts["corrector"], CORRECTORS)
    if predictor == "none" and corrector == "none":
        raise ValueError("predictor='none' and corrector='none' would not move x; choose at least one")
    n_corr = opts["corrector_steps"]
    if corrector != "none":
        check_steps(n_corr, "corrector_steps")
    if corrector == "langevin":
        check_positive("snr", opts["snr"])
        ckw = {"snr": float(opts["snr"])}
    elif corrector == "annealed_langevin":
        check_positive("step_size", opts["step_size"])
        ckw = {"step_size": float(opts["step_size"])}
    else:
        ckw = {}
    qsde = quiet(sde)
    rsde = qsde.reverse(score, probability_flow=False)
    pred, corr = PREDICTORS[predictor], CORRECTORS[corrector]

    def step(x, t, dt, i):
        x, _ = pred(qsde, rsde, x, t, dt, noise)
        t_next = t - dt
        return corr(qsde, score, x, t_next, dt, noise, n_corr, **ckw)[0]

    # With predictor="none" (corrector-only, NCSN) the corrector runs at each grid time
    # t_1 .. t_steps: the grid moves t, the predictor costs nothing.
    return _grid_loop(sde, x, eps, info, opts, progress, return_trajectory, step)


def _run_fixed_pc(predictor, corrector):
    def run(sde, score, x, eps, noise, info, opts, progress, return_trajectory):
        o = dict(opts)
        o.setdefault("predictor", predictor)
        o.setdefault("corrector", corrector)
        o.setdefault("snr", 0.16)
        o.setdefault("corrector_steps", 1)
        o.setdefault("step_size", 0.2)
        x = _run_pc(sde, score, x, eps, noise, info, o, progress, return_trajectory)
        opts.update(o)
        return x
    return run


def _run_ddim(sde, score, x, eps, noise, info, opts, progress, return_trajectory):
    """Deterministic DDIM step (Song, Meng & Ermon 2021) for any Gaussian kernel:

        x0_hat = (x + s^2 score) / m,   eps_hat = -s score,   x' = m' x0_hat + s' eps_hat,

    with (m, s) at t and (m', s') at t - dt. It is the exact probability-flow
    solution when p_0 is a point mass; first order in general.
    """
    qsde = quiet(sde)

    def step(x, t, dt, i):
        m, s = qsde.marginal_coeffs(t)
        m2, s2 = qsde.marginal_coeffs(t - dt)
        sc = score(x, t)
        x0 = (x + expand_as_batch(s ** 2, x) * sc) / expand_as_batch(m, x)
        return expand_as_batch(m2, x) * x0 - expand_as_batch(s2 * s, x) * sc

    return _grid_loop(sde, x, eps, info, opts, progress, return_trajectory, step)


def _run_heun(sde, score, x, eps, noise, info, opts, progress, return_trajectory):
    """Heun's method (explicit trapezoid, 2nd order) on the probability-flow ODE, 2 NFE per step."""
    rsde = quiet(sde).reverse(score, probability_flow=True)

    def step(x, t, dt, i):
        d1, _ = rsde.sde(x, t)
        x_euler = x - d1 * dt
        d2, _ = rsde.sde(x_euler, t - dt)
        return x - 0.5 * (d1 + d2) * dt

    return _grid_loop(sde, x, eps, info, opts, progress, return_trajectory, step)


def _run_em(sde, score, x, eps, noise, info, opts, progress, return_trajectory):
    """Euler-Maruyama on the reverse SDE: x <- x - [f - g^2 score] dt + g sqrt(dt) z."""
    qsde = quiet(sde)
    rsde = qsde.reverse(score, probability_flow=False)
    pred = PREDICTORS["euler_maruyama"]

    def step(x, t, dt, i):
        return pred(qsde, rsde, x, t, dt, noise)[0]

    return _grid_loop(sde, x, eps, info, opts, progress, return_trajectory, step)


def _run_ode(*args):
    from .ode import run_ode
    return run_ode(*args)


def _run_sde(*args):
    from .sdeint import run_sdeint
    return run_sdeint(*args)


_RUNNERS = {
    "euler_maruyama": _run_em,
    "pc": _run_pc,
    "ancestral": _run_fixed_pc("ancestral", "none"),
    "reverse_diffusion": _run_fixed_pc("reverse_diffusion", "none"),
    "annealed_langevin": _run_fixed_pc("none", "annealed_langevin"),
    "ddim": _run_ddim,
    "heun": _run_heun,
    "ode": _run_ode,
    "sde": _run_sde,
}
