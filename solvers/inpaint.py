"""Inverse problems by replacement (Song et al. 2021, App. I.2-I.3): inpainting, colorisation
and the general orthogonal-projection form, with RePaint / universal-guidance self-recurrence.

Observations are P x = P x_known for an orthogonal projector P (P^2 = P = P^T): a pixel mask
(inpainting) or the per-pixel grey direction (1, 1, 1) / sqrt(3) (colorisation, the paper's
orthogonal channel decomposition). The forward SDE is isotropic, so P x_t is distributed as
m(t) P x_0 + s(t) P z. At every step the sampler's state is split into the part it samples,
(I - P) x, and the known part, replaced by a fresh forward-diffused copy:

    x <- (I - P) x + P (m(t) x_known + s(t) z),   z ~ N(0, I),

after the predictor and after every corrector step. The last replacement uses x_known itself,
so the output equals x_known on the observed subspace (exactly, for masks).

Replacement is an approximation: the unobserved part is driven by grad log p_t(x) rather than
the conditional score grad log p_t(x_u | y). `bench/guidance_gmm.py` measures the gap against
the exact conditional mixture (`GaussianMixture.condition`).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ._common import (CountedScore, NoiseSource, SampleInfo, Timer, check_choice, check_eps, check_positive,
                      check_steps, quiet)
from .correctors import CORRECTORS
from .predictors import PREDICTORS, ancestral_coeffs
from .schedules import time_grid
from sde_lib import expand_as_batch

Tensor = torch.Tensor

MASKS = ("left_half", "right_half", "top_half", "bottom_half", "box", "random")


def make_mask(kind: str, shape, box=(0.25, 0.25, 0.75, 0.75), fraction: float = 0.5, generator=None):
    """The observation mask of an image `shape = (C, H, W)`: bool `[C, H, W]` (True = observed) for
    one of MASKS (the box is unknown and the rest observed); `random` draws one mask from `generator`."""
    C, H, W = shape
    m = torch.zeros(C, H, W, dtype=torch.bool)
    if kind == "left_half":
        m[:, :, :W // 2] = True
    elif kind == "right_half":
        m[:, :, W // 2:] = True
    elif kind == "top_half":
        m[:, :H // 2] = True
    elif kind == "bottom_half":
        m[:, H // 2:] = True
    elif kind == "box":      # the box is unknown, the rest observed
        if len(box) != 4 or not all(0.0 <= b <= 1.0 for b in box) or box[0] >= box[2] or box[1] >= box[3]:
            raise ValueError(f"box must be (row0, col0, row1, col1) fractions with row0 < row1, "
                             f"col0 < col1, got {box!r}")
        m[:] = True
        m[:, int(box[0] * H):int(math.ceil(box[2] * H)), int(box[1] * W):int(math.ceil(box[3] * W))] = False
    elif kind == "random":
        if not (0.0 < fraction < 1.0):
            raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
        m[:] = (torch.rand(1, H, W, generator=generator) < fraction)
    else:
        raise ValueError(f"unknown mask {kind!r}; expected one of {list(MASKS)}")
    return m


# sampler name -> (predictor, corrector) defaults; "pc" takes both from the options.
INPAINT_SAMPLERS = {"pc": ("reverse_diffusion", "langevin"), "euler_maruyama": ("euler_maruyama", "none"),
                    "reverse_diffusion": ("reverse_diffusion", "none"), "ancestral": ("ancestral", "none"),
                    "annealed_langevin": ("none", "annealed_langevin")}


def _run(sde, score_fn, x_known, replace, *, sampler="pc", predictor=None, corrector=None, snr=0.16,
         corrector_steps=1, step_size=0.2, steps=None, eps=None, recurrence=1, denoise=False,
         generator: Optional[torch.Generator] = None, progress=False):
    """The replacement PC loop shared by inpaint / colorize / project_inpaint."""
    check_choice("inpainting sampler", sampler, tuple(INPAINT_SAMPLERS))
    p_def, c_def = INPAINT_SAMPLERS[sampler]
    if sampler != "pc" and (predictor is not None or corrector is not None):
        raise ValueError(f"predictor/corrector are options of sampler='pc', not of {sampler!r}")
    predictor = check_choice("predictor", predictor or p_def, PREDICTORS)
    corrector = check_choice("corrector", corrector or c_def, CORRECTORS)
    if predictor == "none" and corrector == "none":
        raise ValueError("predictor='none' and corrector='none' would not move x; choose at least one")
    steps = check_steps(sde.N if steps is None else steps)
    n_corr = check_steps(corrector_steps, "corrector_steps")
    recurrence = check_steps(recurrence, "recurrence")
    ckw = {}
    if corrector == "langevin":
        ckw = {"snr": check_positive("snr", snr)}
    elif corrector == "annealed_langevin":
        ckw = {"step_size": check_positive("step_size", step_size)}
    eps = check_eps(sde, eps)
    if not torch.is_tensor(x_known) or x_known.dim() < 2 or not x_known.is_floating_point():
        raise ValueError(f"x_known must be a floating tensor [B, *dims], got "
                         f"{tuple(x_known.shape) if torch.is_tensor(x_known) else type(x_known).__name__}")
    if not torch.isfinite(x_known).all():
        raise ValueError("x_known holds NaN or inf values (unobserved entries may hold any finite value)")

    qsde = quiet(sde)
    counted = CountedScore(score_fn)
    rsde = qsde.reverse(counted, probability_flow=False)
    pred, corr = PREDICTORS[predictor], CORRECTORS[corrector]
    noise = NoiseSource(x_known.shape, x_known.dtype, x_known.device, generator=generator)
    grid = time_grid(sde, steps, "uniform", eps=eps, dtype=x_known.dtype, device=x_known.device)
    dt = (sde.T - eps) / steps
    B = x_known.shape[0]

    def noisy_known(t):
        m, s = qsde.marginal_coeffs(t)
        return expand_as_batch(m, x_known) * x_known + expand_as_batch(s, x_known) * noise.randn()

    info = SampleInfo(sampler=f"inpaint:{sampler}", options=dict(
        predictor=predictor, corrector=corrector, steps=steps, corrector_steps=n_corr, recurrence=recurrence,
        eps=eps, denoise=bool(denoise), **ckw))
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="inpaint")
    with Timer() as timer, torch.no_grad():
        x = replace(noise.prior(sde), noisy_known(grid[0].expand(B)))
        for i in iterator:
            t = grid[i].expand(B)
            t_next = grid[i + 1].expand(B)
            for r in range(recurrence):
                x, _ = pred(qsde, rsde, x, t, dt, noise)
                x = replace(x, noisy_known(t_next))
                if corrector != "none":
                    for _ in range(n_corr):
                        x, _ = corr(qsde, counted, x, t_next, dt, noise, 1, **ckw)
                        x = replace(x, noisy_known(t_next))
                if r + 1 < recurrence:      # re-noise t_next -> t with the exact one-step forward kernel
                    a, b2, _ = ancestral_coeffs(qsde, t, dt)
                    x = expand_as_batch(a, x) * x + expand_as_batch(b2.sqrt(), x) * noise.randn()
        if denoise:     # Tweedie at eps on the whole state, then the known part is put back exactly
            t_eps = grid[-1].expand(B)
            m, s = qsde.marginal_coeffs(t_eps)
            x = (x + expand_as_batch(s ** 2, x) * counted(x, t_eps)) / expand_as_batch(m, x)
        x = replace(x, x_known)
    info.nfe, info.steps, info.seconds = counted.nfe, steps, timer.seconds
    return x, info


def _as_mask(mask, x_known: Tensor) -> Tensor:
    m = torch.as_tensor(mask, device=x_known.device)
    if m.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = observed), got dtype {m.dtype}")
    try:
        torch.broadcast_shapes(m.shape, x_known.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to x_known's shape "
                         f"{tuple(x_known.shape)}") from None
    if torch.broadcast_shapes(m.shape, x_known.shape) != x_known.shape:
        raise ValueError(f"mask of shape {tuple(m.shape)} is larger than x_known's shape {tuple(x_known.shape)}")
    return m


def inpaint(sde, score_fn, x_known: Tensor, mask, sampler: str = "pc", **options):
    """Song et al.'s PC inpainting: sample the unobserved entries given `x_known` where `mask` is True.

    Args:
        x_known: `[B, *dims]`; entries where mask is False are ignored (any finite value).
        mask:    bool, broadcastable to x_known (`[*dims]` for one mask, `[B, *dims]` per sample).
        sampler: "pc" (options `predictor`, `corrector`, `snr`, `corrector_steps`, `step_size`), or
                 the fixed pairs "euler_maruyama", "reverse_diffusion", "ancestral", "annealed_langevin".
        options: `steps` (default sde.N), `eps`, `recurrence` (k >= 1: RePaint-style resampling, each
                 step repeated k times with a forward re-noising in between), `denoise` (a final
                 Tweedie step at eps, +1 NFE, before the last replacement), `generator`, `progress`.

    Returns:
        (x, info): x equals x_known exactly where mask is True; `info.nfe` counts score calls.
    """
    m = _as_mask(mask, x_known) if torch.is_tensor(x_known) else mask
    return _run(sde, score_fn, x_known, lambda x, known: torch.where(m, known, x), sampler=sampler, **options)


def project_inpaint(sde, score_fn, x_known: Tensor, project: Callable[[Tensor], Tensor], sampler: str = "pc",
                    **options):
    """The general linear-observation form: observe P x for an orthogonal projector `project(x) = P x`
    (P^2 = P = P^T; not checked beyond one probe). Returns x with P x = P x_known (to rounding)."""
    if torch.is_tensor(x_known) and x_known.is_floating_point() and x_known.numel():
        probe = torch.randn(x_known.shape, generator=torch.Generator().manual_seed(0), dtype=x_known.dtype).to(
            x_known.device)
        p1 = project(probe)
        if p1.shape != x_known.shape or not torch.allclose(project(p1), p1, atol=1e-5, rtol=1e-4):
            raise ValueError("project must be a projector (project(project(x)) == project(x), shape of x)")
    return _run(sde, score_fn, x_known, lambda x, known: x - project(x) + project(known), sampler=sampler,
                **options)


def grey_projector(x: Tensor) -> Tensor:
    """Projection onto the per-pixel grey direction (1, ..., 1)/sqrt(C) of `[B, C, H, W]`: the channel mean."""
    return x.mean(dim=1, keepdim=True).expand_as(x)


def colorize(sde, score_fn, grey: Tensor, num_channels: int = 3, sampler: str = "pc", **options):
    """Colorisation (Song et al. 2021, App. I.3) as replacement in the decoupled channel space.

    The paper rotates channels with an orthogonal matrix whose first row is (1, 1, 1)/sqrt(3), so the
    grey value is one coordinate and the rest are sampled. Replacing that coordinate is the same as
    projecting onto the grey direction, which is what this does (no matrix needed).

    Args:
        grey: `[B, 1, H, W]` the per-pixel channel mean (R + G + B)/3 in model space.
    Returns:
        (x `[B, num_channels, H, W]`, info), with x.mean(1) == grey up to rounding.
    """
    if not torch.is_tensor(grey) or grey.dim() != 4 or grey.shape[1] != 1:
        raise ValueError(f"grey must be a [B, 1, H, W] tensor, got "
                         f"{tuple(grey.shape) if torch.is_tensor(grey) else type(grey).__name__}")
    if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 2:
        raise ValueError(f"num_channels must be an int >= 2, got {num_channels!r}")
    known = grey.expand(-1, num_channels, -1, -1).contiguous()
    return _run(sde, score_fn, known, lambda x, k: x - grey_projector(x) + grey_projector(k), sampler=sampler,
                **options)
