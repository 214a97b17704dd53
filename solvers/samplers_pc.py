"""The reverse-SDE samplers of Song et al. (2021): Euler-Maruyama and predictor-corrector
(with its named special cases), written as fixed-grid registry samplers.

Each step i moves x from t_i to t_{i+1} < t_i (dt_i = t_i - t_{i+1} > 0) with a
predictor of `PREDICTORS`, then runs `corrector_steps` corrector steps of
`CORRECTORS` at t_{i+1} (predictor first, corrector at the new level, as in the
paper's Algorithms 2-3). The first corrector step acts at t_1, the last at eps.
"""
from __future__ import annotations

from ._common import check_choice, check_positive, check_steps
from .correctors import CORRECTORS, LANGEVIN_NORMS
from .predictors import PREDICTORS
from .sampling import register_sampler


def _grid(ts):
    """(times as floats, positive step sizes) of a decreasing grid, read once (no per-step sync)."""
    times = ts.double().cpu().tolist()
    return times, [a - b for a, b in zip(times[:-1], times[1:])]


def pc(sde, score, x, ts, noise, callback, *, predictor, corrector, snr, corrector_steps, step_size,
       langevin_norm):
    """Predictor-corrector sampling (Song et al. 2021, Algorithms 2 and 3).

    predictor: a name in `PREDICTORS` (one step from t_i to t_{i+1});
    corrector: a name in `CORRECTORS`, run `corrector_steps` times at t_{i+1}:
    "langevin" takes its step from `snr` and `langevin_norm` (see
    `correctors.langevin`), "annealed_langevin" from `step_size` (NCSN).
    With predictor="none" (corrector-only, NCSN) the grid only moves t.
    """
    check_choice("predictor", predictor, PREDICTORS)
    check_choice("corrector", corrector, CORRECTORS)
    if predictor == "none" and corrector == "none":
        raise ValueError("predictor='none' and corrector='none' would not move x; choose at least one")
    if corrector != "none":
        check_steps(corrector_steps, "corrector_steps")
    if corrector == "langevin" and langevin_norm == "batch" and noise.generators is not None:
        raise ValueError("langevin_norm='batch' makes each sample's step depend on its batch-mates, which "
                         "breaks the batch invariance promised by seeds; use langevin_norm='kernel' "
                         "(default) or 'per_sample' with seeds")
    if corrector == "langevin":
        ckw = {"snr": check_positive("snr", snr), "norm": check_choice("langevin_norm", langevin_norm,
                                                                         LANGEVIN_NORMS)}
    elif corrector == "annealed_langevin":
        ckw = {"step_size": check_positive("step_size", step_size)}
    else:
        ckw = {}
    rsde = sde.reverse(score, probability_flow=False)
    pred, corr = PREDICTORS[predictor], CORRECTORS[corrector]
    B = x.shape[0]
    _, dts = _grid(ts)
    for i, dt in enumerate(dts):
        x, _ = pred(sde, rsde, x, ts[i].expand(B), dt, noise)
        x, _ = corr(sde, score, x, ts[i + 1].expand(B), dt, noise, corrector_steps, **ckw)
        callback(i, x)
    return x


def euler_maruyama(sde, score, x, ts, noise, callback):
    """Euler-Maruyama on the reverse SDE: x <- x - [f - g^2 score] dt + g sqrt(dt) z (1 NFE/step)."""
    rsde = sde.reverse(score, probability_flow=False)
    step = PREDICTORS["euler_maruyama"]
    B = x.shape[0]
    for i, dt in enumerate(_grid(ts)[1]):
        x, _ = step(sde, rsde, x, ts[i].expand(B), dt, noise)
        callback(i, x)
    return x


def _fixed_pc(predictor, corrector, **fixed):
    def run(sde, score, x, ts, noise, callback, **options):
        kw = {"snr": 0.16, "corrector_steps": 1, "step_size": 0.2, "langevin_norm": "kernel", **fixed,
              **options}
        return pc(sde, score, x, ts, noise, callback, predictor=predictor, corrector=corrector, **kw)
    return run


_PC_DEFAULTS = {"predictor": "reverse_diffusion", "corrector": "langevin", "snr": 0.16, "corrector_steps": 1,
                "step_size": 0.2, "langevin_norm": "kernel"}

register_sampler("euler_maruyama", euler_maruyama, options={},
                 doc="Euler-Maruyama on the reverse SDE, 1 NFE/step")
register_sampler("pc", pc, options=dict(_PC_DEFAULTS),
                 doc="predictor-corrector (Song et al. 2021): PREDICTORS x CORRECTORS, 1 + corrector_steps NFE/step")
register_sampler("ancestral", _fixed_pc("ancestral", "none"), options={},
                 doc="ancestral sampling (DDPM for VP, SMLD posterior for VE) = pc(ancestral, none)")
register_sampler("reverse_diffusion", _fixed_pc("reverse_diffusion", "none"), options={},
                 doc="reverse diffusion predictor alone = pc(reverse_diffusion, none)")
register_sampler("annealed_langevin", _fixed_pc("none", "annealed_langevin"),
                 options={"corrector_steps": 1, "step_size": 0.2},
                 doc="NCSN annealed Langevin dynamics = pc(none, annealed_langevin), corrector_steps NFE/level")
