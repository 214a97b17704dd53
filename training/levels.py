"""Discrete levels of data: level k of L <-> bin centre (2k + 1)/L - 1 in [-1, 1), 8-bit values (and 8-bit
values that encode fewer levels), uniform dequantisation within a bin, and the `data.num_levels` setting."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from configs.errors import InputError

Tensor = torch.Tensor


def levels_to_model(k, num_levels: int) -> Tensor:
    """Level k in {0..L-1} (any integer array) -> bin centre (2k + 1) / L - 1 in [-1, 1), float32."""
    k = k.detach().clone() if torch.is_tensor(k) else torch.from_numpy(np.array(k))
    return (2.0 * k.to(torch.float64) + 1.0).div(num_levels).sub(1.0).to(torch.float32)


def model_to_levels(x: Tensor, num_levels: int) -> Tensor:
    """Inverse of levels_to_model (bin index of x): floor((x + 1) L / 2), clamped to 0..L-1, int64."""
    return torch.clamp(torch.floor((x.detach().double() + 1.0) * (num_levels / 2.0)), 0, num_levels - 1).long()


def uint8_to_levels(a: np.ndarray, num_levels: int, source: str) -> np.ndarray:
    """8-bit values that encode L < 256 equally spaced levels, u = round(k 255 / (L - 1)),
    back to k in {0..L-1}; refuses values off that grid (naming the first one)."""
    k = np.round(a.astype(np.float64) * (num_levels - 1) / 255.0).astype(np.int64)
    back = np.round(k * 255.0 / (num_levels - 1))
    off = back != a
    if off.any():
        raise InputError(f"{source}: data.num_levels={num_levels} but the 8-bit value {int(a[off].flat[0])} "
                         f"is not one of the {num_levels} levels round(k * 255 / {num_levels - 1})")
    return k


def to_8bit_bins(x: Tensor, num_levels: int) -> Tensor:
    """Data on L levels (bin centres in [-1, 1)) -> the same images as 8-bit values
    v = round(255 k / (L - 1)) (v = k when L = 256), returned as 8-bit bin centres (2v + 1)/256 - 1.

    The pixel grid of score_sde's bits/dim protocol (`eval.pixel_convention = "score_sde"`): it
    reads every image as 8-bit, k/255 in [0, 1], dequantises y = (v + U)/256 and scales 2y - 1 with
    offset 7 (datasets.py, likelihood.py). Dequantising these centres uniformly within their 256
    bins (`training.data.dequantize`, offset log2(256/2) = 7) gives exactly those points. For
    8-bit data the map is the identity."""
    k = model_to_levels(x, num_levels)
    if num_levels != 256:
        k = torch.round(k.double() * (255.0 / (num_levels - 1))).long()
    return levels_to_model(k, 256).to(x.dtype)


def declared_levels(d) -> Optional[int]:
    """data.num_levels: 0 (or absent) -> None (the data's own levels), else an int 2..256."""
    v = d.num_levels
    if isinstance(v, bool) or not isinstance(v, int) or not (v == 0 or 2 <= v <= 256):
        raise InputError(f"data.num_levels must be 0 (the data's own levels) or an int in 2..256, got {v!r}")
    return v or None


def levels_of_uint8(a: np.ndarray, levels: Optional[int], source: str) -> Tensor:
    """uint8 data in model space: 256 levels, or `levels` equally spaced 8-bit levels."""
    if levels is None or levels == 256:
        return levels_to_model(a, 256)
    return levels_to_model(uint8_to_levels(a, levels, source), levels)


def uint8_to_model(u) -> Tensor:
    """u in {0..255} (any integer array) -> (u + 1/2) / 128 - 1, float32."""
    u = u.detach().clone() if torch.is_tensor(u) else torch.from_numpy(np.array(u))
    u = u.to(torch.float32)
    return (u + 0.5) / 128.0 - 1.0


def model_to_uint8(x: Tensor) -> Tensor:
    """Inverse of uint8_to_model (bin index of x): floor((x + 1) 128), clamped to 0..255."""
    return torch.clamp(torch.floor((x.detach().float() + 1.0) * 128.0), 0, 255).to(torch.uint8)


def dequantize(x: Tensor, generator: Optional[torch.Generator] = None, num_levels: int = 256) -> Tensor:
    """Uniform dequantisation within the data's own bins: a bin centre x of L levels becomes
    x - 1/L + 2U/L, U ~ U[0, 1) (uniform over the bin of width 2/L; L = 256: x - 1/256 + U/128)."""
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
        raise InputError(f"num_levels must be an int >= 2, got {num_levels!r}")
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + (2.0 * u - 1.0) / num_levels
