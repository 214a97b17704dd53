"""Inverse problems by replacement (Song et al. 2021, App. I.2-I.3): inpainting, colorisation and the
general orthogonal-projection form, through `sample()` and the one sampler registry.

Observations are P x = P y for an orthogonal projector P (P^2 = P = P^T): a pixel mask (inpainting)
or the per-pixel grey direction (1, 1, 1) / sqrt(3) (colorisation, the paper's orthogonal channel
decomposition). The forward SDE is isotropic, so P x_t ~ m(t) P x_0 + s(t) P z. `sample()` takes the
observation (`observation=Observation(y, project)`) and

    - gives the score the state with its known part replaced, score(x - P x + P y_t, t),
      y_t = m(t) y + s(t) z, with a fresh z at every score call for fixed-grid samplers (as
      Song et al. replace after every predictor and corrector step) and one z for the whole
      run of a self-stepping sampler (an adaptive ODE needs a smooth right-hand side);
    - ends with the known part put back exactly: x <- x - P x + P y (after `denoise`);
    - with `recurrence=k > 1` (RePaint, Lugmayr et al. 2022) runs the grid one interval at a
      time: the state's known part is replaced after every interval, and each interval is
      repeated k times with a re-noising t_{i+1} -> t_i by the exact forward kernel between.

Every sampler here updates x by combining x, scores and noise with scalar coefficients, so the
unknown part (I - P) x evolves exactly as under Song et al.'s replacement of the state: it only
sees (I - P) x and the score at the replaced state. Every registered sampler therefore runs it,
with its options, seeds and schedules; `recurrence > 1` is refused (with the reason) for samplers
that step on their own (`ode`, `sde`) or whose steps use earlier steps (multistep solvers).

Replacement is an approximation: the unobserved part is driven by grad log p_t(x) rather than the
conditional score grad log p_t(x_u | y). `bench/guidance_gmm.py` measures the gap against the exact
conditional mixture (`GaussianMixture.condition`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .sampling import Observation, sample

Tensor = torch.Tensor

MASKS = ("left_half", "right_half", "top_half", "bottom_half", "box", "random")


def make_mask(kind: str, shape, box=(0.25, 0.25, 0.75, 0.75), fraction: float = 0.5, generator=None):
    """The observation mask of an image `shape = (C, H, W)`: bool `[C, H, W]` (True = observed) for
    one of MASKS (for "box" the box is unknown and the rest observed); `random` draws one mask of
    observed share `fraction` from `generator`."""
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
    elif kind == "box":
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


def _check_known(x_known):
    if not torch.is_tensor(x_known) or x_known.dim() < 2 or not x_known.is_floating_point():
        raise ValueError(f"x_known must be a floating tensor [B, *dims], got "
                         f"{tuple(x_known.shape) if torch.is_tensor(x_known) else type(x_known).__name__}")
    if not torch.isfinite(x_known).all():
        raise ValueError("x_known holds NaN or inf values (unobserved entries may hold any finite value)")


def _as_mask(mask, x_known: Tensor) -> Tensor:
    m = torch.as_tensor(mask, device=x_known.device)
    if m.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = observed), got dtype {m.dtype}")
    try:
        shape = torch.broadcast_shapes(m.shape, x_known.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to x_known's shape "
                         f"{tuple(x_known.shape)}") from None
    if shape != x_known.shape:
        raise ValueError(f"mask of shape {tuple(m.shape)} is larger than x_known's shape {tuple(x_known.shape)}")
    return m


def _run(sde, score_fn, x_known, project, sampler, task, options):
    _check_known(x_known)
    options.setdefault("dtype", x_known.dtype)
    options.setdefault("device", x_known.device)
    x, info = sample(sde, score_fn, tuple(x_known.shape), sampler,
                     observation=Observation(x_known, project), **options)
    info.sampler = f"{task}:{sampler}"
    return x, info


def inpaint(sde, score_fn, x_known: Tensor, mask, sampler: str = "pc", **options):
    """Song et al.'s inpainting: sample the unobserved entries given `x_known` where `mask` is True.

    Args:
        x_known: `[B, *dims]`; entries where mask is False are ignored (any finite value).
        mask:    bool, broadcastable to x_known (`[*dims]` for one mask, `[B, *dims]` per sample).
        sampler: any name of `SAMPLERS`, with its options (`sampler_table()`), `steps`, `schedule`,
                 `eps`, `denoise` (a final Tweedie step before the last replacement), `generator`
                 or `seeds`, `progress`, and `recurrence` (k >= 1: RePaint resampling).
    Returns:
        (x, info): x equals x_known exactly where mask is True; `info.nfe` counts score calls.
    """
    _check_known(x_known)
    m = _as_mask(mask, x_known)
    return _run(sde, score_fn, x_known, lambda x: torch.where(m, x, torch.zeros_like(x)), sampler, "inpaint",
                options)


def project_inpaint(sde, score_fn, x_known: Tensor, project: Callable[[Tensor], Tensor], sampler: str = "pc",
                    **options):
    """The general linear-observation form: observe P x for an orthogonal projector `project(x) = P x`
    (P^2 = P = P^T; checked on one probe). Returns x with P x = P x_known (to rounding)."""
    _check_known(x_known)
    probe = torch.randn(x_known.shape, generator=torch.Generator().manual_seed(0), dtype=x_known.dtype).to(
        x_known.device)
    p1 = project(probe)
    if p1.shape != x_known.shape or not torch.allclose(project(p1), p1, atol=1e-5, rtol=1e-4):
        raise ValueError("project must be a projector (project(project(x)) == project(x), shape of x)")
    return _run(sde, score_fn, x_known, project, sampler, "project_inpaint", options)


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
    return _run(sde, score_fn, known, grey_projector, sampler, "colorize", options)
