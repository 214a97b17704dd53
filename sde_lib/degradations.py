"""Deterministic degradations D(x0, t) of cold diffusion (Bansal et al. 2022, "Cold Diffusion:
Inverting Arbitrary Image Transforms Without Noise"), and the Gaussian noise of the SDEs as the
hot case. They are forward processes, so they live with the SDEs; nothing here imports models
or solvers.

Contract of a degradation `D` (an instance of `Degradation`):

    D(x0, t) -> x_t        x0 `[B, C, H, W]`, t `[B]` in [0, T] (T = 1), D(x0, 0) = x0
    D.schedule(t) -> [B]   the scalar the degradation follows (sigma_blur(t), mask fraction, ...)
    D.training_input(x0, t, generator)   what training degrades x0 with (D itself, or with a
                           fresh draw of the randomness for the Gaussian case)

Every built-in degradation is affine in x0 and continuous in t. Registered degradations
(`DEGRADATIONS` in `sde_lib.degradation_registry`; add your own with `register_degradation`):

| name       | D(x0, t)                                                      | schedule(t)                      |
|------------|---------------------------------------------------------------|----------------------------------|
| blur       | exp(sigma(t)^2/2 Lap) x0: Gaussian blur of std sigma(t)        | sigma(t) = sigma_max (t/T)^power |
| mask       | (1 - M(t)) x0 + M(t) fill, M_p(t) = clip(f(t) P - rank_p, 0, 1)| f(t) = fraction_max t/T          |
| pixelate   | (1 - a) P_k x0 + a P_{k+1} x0, u = K t/T, k = floor(u), a = u - k | u (the pixelation level)      |
| snow       | (1 - alpha(t) S) x0 + alpha(t) S white                         | alpha(t) = amount t/T            |
| gaussian   | m(t) x0 + s(t) z (z fixed), m and s from an `SDE`              | s(t) / m(t)                      |

Blur is *cumulative*: x_t is x0 blurred once with std sigma(t), and since the heat semigroup
composes exactly, blurring x_s further by std sigma' gives x_t when sigma(t)^2 = sigma(s)^2 +
sigma'^2. The reference code applies t per-step kernels of std k_i in sequence, which is the
same thing with sigma(t_i)^2 = sum_{j <= i} k_j^2: its "Constant" routine (k_j = k) is power
1/2, its "Incremental" routine (k_j = k j) is power 3/2 (sum of j^2 ~ i^3 / 3).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch

from .base import expand_as_batch
from .sdes import VPSDE

Tensor = torch.Tensor


def _number(name, value, lo=None, hi=None, lo_open=False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        rng = (("(" if lo_open else "[") + f"{lo}, " if lo is not None else "(-inf, ") + \
            (f"{hi}]" if hi is not None else "inf)")
        raise ValueError(f"{name} must be a finite number in {rng}, got {value!r}")
    return float(value)


class Degradation:
    """Base class: a deterministic degradation D(x0, t) of images `[B, C, H, W]` on t in [0, T].

    Subclasses set `name`, `generates` (True when D(x0, T) forgets x0 up to a low-dimensional
    summary a prior can be fitted to, so that restoring prior draws generates images) and
    implement `schedule(t)` and `_apply(x0, t)`."""

    name = "degradation"
    generates = False
    T = 1.0

    def __init__(self, shape: Tuple[int, int, int]):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or any(s <= 0 for s in shape):
            raise ValueError(f"degradation {self.name!r} needs an image shape (C, H, W), got {shape}")
        self.shape = shape

    def schedule(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def _apply(self, x0: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def check(self, x0: Tensor, t: Tensor) -> None:
        if not torch.is_tensor(x0) or tuple(x0.shape[1:]) != self.shape:
            raise ValueError(f"degradation {self.name!r} takes x0 of shape [B, {', '.join(map(str, self.shape))}], "
                             f"got {tuple(getattr(x0, 'shape', ()))}")
        if not torch.is_tensor(t) or t.dim() != 1 or t.shape[0] != x0.shape[0]:
            raise ValueError(f"t must have shape [B] = [{x0.shape[0]}], got {tuple(getattr(t, 'shape', ()))}")
        lo, hi = t.min().item(), t.max().item()
        if math.isnan(lo) or math.isnan(hi) or lo < 0 or hi > self.T * (1 + 1e-6):
            raise ValueError(f"t must lie in [0, T] = [0, {self.T}], got values in [{lo}, {hi}]")

    def __call__(self, x0: Tensor, t: Tensor) -> Tensor:
        """x_t = D(x0, t), `[B, C, H, W]`."""
        self.check(x0, t)
        return self._apply(x0, t)

    def training_input(self, x0: Tensor, t: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """The degraded input a restoration network is trained on (D itself here)."""
        return self(x0, t)

    def sampling_pair(self, restore: Callable[[Tensor, Tensor], Tensor]):
        """(degrade, restore) for `solvers.cold_sample`: (D, restore) for a deterministic D."""
        return self, restore

    def __repr__(self):
        return f"{type(self).__name__}(shape={self.shape})"


def _dct_matrix(n: int, dtype=torch.float64) -> Tensor:
    """Orthonormal DCT-II matrix `[n, n]`: row k = a_k cos(pi k (2i + 1) / (2n)). Its rows are the
    eigenvectors of the discrete Laplacian with reflecting (Neumann) ends, eigenvalues
    -4 sin^2(pi k / (2n))."""
    i = torch.arange(n, dtype=dtype)
    k = i[:, None]
    c = torch.cos(math.pi * k * (2 * i[None, :] + 1) / (2 * n)) * math.sqrt(2.0 / n)
    c[0] = 1.0 / math.sqrt(n)
    return c


class GaussianBlur(Degradation):
    """Cumulative Gaussian blur: x_t = exp(sigma(t)^2 / 2 * Lap) x0 with sigma(t) = sigma_max (t/T)^power.

    Lap is the 5-point discrete Laplacian with reflecting borders, so x_t is the heat equation run
    for time sigma^2/2 (the discrete Gaussian of variance sigma^2 per axis, the Gaussian kernel in
    the continuum limit). Computed exactly in the DCT basis: per axis, coefficient k is multiplied
    by exp(-2 sigma^2 sin^2(pi k / (2n))). Composition is exact (sigma^2 adds); as sigma -> inf,
    x_t -> the per-channel mean image (coefficient k = 0 is kept), the reference's full blur.

    sigma_max = inf asks for that full blur: it is replaced by `full_blur_sigma(H, W)`, the
    smallest std at which every other coefficient's gain is <= 2^-24 (float32's unit roundoff), so
    D(x0, T) is the per-channel mean to float32 rounding (`self.full` is True)."""

    name = "blur"
    generates = True

    def __init__(self, shape, sigma_max: float = 6.0, power: float = 1.0):
        super().__init__(shape)
        _, H, W = self.shape
        self.full = isinstance(sigma_max, (int, float)) and sigma_max == math.inf
        if self.full:
            sigma_max = full_blur_sigma(H, W)
        self.sigma_max = _number("blur sigma_max (the blur std sigma_blur(T), or inf: the full blur)", sigma_max,
                                 0.0, lo_open=True)
        self.power = _number("blur power (sigma_blur(t) = sigma_max (t/T)^power)", power, 0.0, lo_open=True)
        self._dct = {n: _dct_matrix(n) for n in {H, W}}
        self._mu = {n: 4 * torch.sin(math.pi * torch.arange(n, dtype=torch.float64) / (2 * n)) ** 2
                    for n in {H, W}}

    def schedule(self, t: Tensor) -> Tensor:
        """sigma_blur(t) `[B]`."""
        return self.sigma_max * (t / self.T).clamp(min=0) ** self.power

    def blur(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Blur `x [B, C, H, W]` by std `sigma [B]` (>= 0)."""
        _, H, W = self.shape
        ch, cw = (self._dct[n].to(x.dtype).to(x.device) for n in (H, W))
        mh, mw = (self._mu[n].to(x.dtype).to(x.device) for n in (H, W))
        gain = torch.exp(-0.5 * (sigma.to(x.dtype) ** 2)[:, None, None] * (mh[:, None] + mw[None, :]))  # [B, H, W]
        y = torch.einsum("kh,bchw,lw->bckl", ch, x, cw)
        return torch.einsum("kh,bckl,lw->bchw", ch, y * gain[:, None], cw)

    def _apply(self, x0, t):
        return self.blur(x0, self.schedule(t))

    def __repr__(self):
        full = ", full=True" if self.full else ""
        return f"GaussianBlur(shape={self.shape}, sigma_max={self.sigma_max}, power={self.power}{full})"


def full_blur_sigma(H: int, W: int, tol: float = 2.0 ** -24) -> float:
    """The smallest blur std whose gain on every non-constant DCT coefficient of an H x W image is
    <= tol: the slowest mode (k = 1 along the longer side, Laplacian eigenvalue
    mu = 4 sin^2(pi / (2 n))) decays as exp(-sigma^2 mu / 2), so sigma = sqrt(2 ln(1/tol) / mu)
    (8x8: 14.8; 28x28: 51.4 at tol = 2^-24)."""
    n = max(H, W)
    if n < 2:
        return 1.0          # a single pixel is its own mean
    mu = 4 * math.sin(math.pi / (2 * n)) ** 2
    return math.sqrt(2 * math.log(1 / tol) / mu)


def _pixel_ranks(H: int, W: int, order: str, seed: int) -> Tensor:
    """rank of each pixel `[H, W]` (0 = masked first): by Chebyshev distance to the centre (ties in a
    fixed seeded order) for "centre", a seeded permutation for "random"."""
    g = torch.Generator().manual_seed(seed)
    tie = torch.randperm(H * W, generator=g).to(torch.float64) / (H * W)
    if order == "centre":
        i = torch.arange(H, dtype=torch.float64)[:, None] - (H - 1) / 2
        j = torch.arange(W, dtype=torch.float64)[None, :] - (W - 1) / 2
        key = torch.maximum(i.abs() / H, j.abs() / W).reshape(-1) + 1e-6 * tie
    else:
        key = tie
    ranks = torch.empty(H * W, dtype=torch.float64)
    ranks[torch.argsort(key)] = torch.arange(H * W, dtype=torch.float64)
    return ranks.reshape(H, W)


class Masking(Degradation):
    """Pixel masking: x_t = (1 - M(t)) x0 + M(t) fill, one mask for all channels, with
    M_p(t) = clip(f(t) P - rank_p, 0, 1), P = H W pixels and f(t) = fraction_max t / T the masked
    fraction (sum_p M_p = f P exactly). order "centre": a square growing from the centre; "random":
    a fixed seeded random order. With fraction_max = 1, x_T = fill everywhere: one x_T for all data."""

    name = "mask"

    def __init__(self, shape, order: str = "centre", fraction_max: float = 1.0, fill: float = 0.0, seed: int = 0):
        super().__init__(shape)
        if order not in ("centre", "random"):
            raise ValueError(f"unknown mask order {order!r}; expected one of ['centre', 'random']")
        self.order = order
        self.fraction_max = _number("mask fraction_max (the masked fraction at T)", fraction_max, 0.0, 1.0)
        self.fill = _number("mask fill", fill)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"mask seed must be an int >= 0, got {seed!r}")
        self.seed = seed
        self.ranks = _pixel_ranks(self.shape[1], self.shape[2], order, seed)
        self.generates = self.fraction_max == 1.0

    def schedule(self, t):
        """The masked fraction f(t) `[B]`."""
        return self.fraction_max * t / self.T

    def mask(self, t: Tensor, like: Tensor) -> Tensor:
        """M(t) `[B, 1, H, W]` in [0, 1]."""
        P = self.shape[1] * self.shape[2]
        r = self.ranks.to(like.dtype).to(like.device)
        return (expand_as_batch(self.schedule(t).to(like.dtype) * P, like) - r).clamp(0, 1)

    def _apply(self, x0, t):
        m = self.mask(t, x0)
        return (1 - m) * x0 + m * self.fill

    def __repr__(self):
        return f"Masking(shape={self.shape}, order={self.order!r}, fraction_max={self.fraction_max}, fill={self.fill})"


class Pixelate(Degradation):
    """Pixelation through a ladder of resolutions r_0 = H > r_1 > ... > r_K (each dividing H = W):
    P_k x = the average over r-blocks of size H/r_k, repeated back to H x H. With u = K t/T,
    k = min(floor(u), K - 1), a = u - k: x_t = (1 - a) P_k x0 + a P_{k+1} x0 (continuous in t,
    x_T = P_K x0; the default ladder halves down to 1 pixel, the per-channel mean)."""

    name = "pixelate"
    generates = True

    def __init__(self, shape, resolutions: Optional[Tuple[int, ...]] = None):
        super().__init__(shape)
        C, H, W = self.shape
        if H != W:
            raise ValueError(f"pixelate needs square images, got {H}x{W}")
        if resolutions is None or resolutions == ():
            resolutions, r = [H], H
            while r % 2 == 0 and r > 1:
                r //= 2
                resolutions.append(r)
            if resolutions[-1] != 1:
                resolutions.append(1)
        res = tuple(resolutions)
        if (len(res) < 2 or res[0] != H or any(isinstance(r, bool) or not isinstance(r, int) for r in res)
                or any(a <= b for a, b in zip(res, res[1:])) or any(r <= 0 or H % r for r in res)):
            raise ValueError(f"pixelate resolutions must be decreasing ints dividing {H}, starting at {H}, "
                             f"at least two; got {resolutions!r}")
        self.resolutions = res
        self.generates = res[-1] == 1

    @property
    def levels(self) -> int:
        return len(self.resolutions) - 1

    def schedule(self, t):
        """The level u = K t / T `[B]` (u = k: resolution r_k)."""
        return self.levels * t / self.T

    def pixelate(self, x: Tensor, k: int) -> Tensor:
        r = self.resolutions[k]
        f = self.shape[1] // r
        if f == 1:
            return x
        B, C, H, W = x.shape
        y = x.reshape(B, C, r, f, r, f).mean(dim=(3, 5), keepdim=True)
        return y.expand(B, C, r, f, r, f).reshape(B, C, H, W)

    def _apply(self, x0, t):
        u = self.schedule(t).to(x0.dtype)
        k = torch.clamp(torch.floor(u), max=self.levels - 1)
        a = expand_as_batch(u - k, x0)
        levels = torch.stack([self.pixelate(x0, j) for j in range(self.levels + 1)])     # [K+1, B, C, H, W]
        idx = k.long()
        rows = torch.arange(x0.shape[0], device=x0.device)
        return (1 - a) * levels[idx, rows] + a * levels[idx + 1, rows]

    def __repr__(self):
        return f"Pixelate(shape={self.shape}, resolutions={self.resolutions})"


class Snow(Degradation):
    """Snow: a fixed seeded flake pattern S in [0, 1] `[1, H, W]` (each pixel a flake with probability
    `density`, of opacity U(0.5, 1)) blended in: x_t = (1 - alpha(t) S) x0 + alpha(t) S white, with
    alpha(t) = amount t / T. x_T keeps x0 outside the flakes: snow restores, it does not generate."""

    name = "snow"

    def __init__(self, shape, amount: float = 1.0, density: float = 0.25, white: float = 1.0, seed: int = 0):
        super().__init__(shape)
        self.amount = _number("snow amount (the blend alpha(T))", amount, 0.0, 1.0)
        self.density = _number("snow density (the share of flake pixels)", density, 0.0, 1.0, lo_open=True)
        self.white = _number("snow white", white)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"snow seed must be an int >= 0, got {seed!r}")
        self.seed = seed
        g = torch.Generator().manual_seed(seed)
        _, H, W = self.shape
        flakes = (torch.rand(1, H, W, generator=g, dtype=torch.float64) < self.density).to(torch.float64)
        self.pattern = flakes * (0.5 + 0.5 * torch.rand(1, H, W, generator=g, dtype=torch.float64))

    def schedule(self, t):
        """The blend alpha(t) `[B]`."""
        return self.amount * t / self.T

    def _apply(self, x0, t):
        w = expand_as_batch(self.schedule(t).to(x0.dtype), x0) * self.pattern.to(x0.dtype).to(x0.device)
        return (1 - w) * x0 + w * self.white

    def __repr__(self):
        return f"Snow(shape={self.shape}, amount={self.amount}, density={self.density}, seed={self.seed})"


class GaussianNoise(Degradation):
    """The hot case: x_t = m(t) x0 + s(t) z with the perturbation kernel (m, s) of an SDE
    (`sde.marginal_coeffs`) and a *fixed* noise z `[B, C, H, W]` (`with_noise(z)`), so that D is a
    deterministic function of (x0, t). Training draws a fresh z per example (`training_input`).
    D(x0, 0) = x0 needs s(0) = 0 (VP, sub-VP; VE has s(0) = sigma_min)."""

    name = "gaussian"
    generates = True

    def __init__(self, shape, sde=None, z: Optional[Tensor] = None):
        super().__init__(shape)
        if sde is None:
            sde = VPSDE()
        if not hasattr(sde, "marginal_coeffs"):
            raise ValueError(f"gaussian degradation needs an SDE with marginal_coeffs, got {type(sde).__name__}")
        self.sde = sde
        self.T = float(sde.T)
        self.z = z

    def with_noise(self, z: Tensor) -> "GaussianNoise":
        """The same degradation with its noise fixed to z `[B, C, H, W]`."""
        return GaussianNoise(self.shape, self.sde, z)

    def schedule(self, t):
        """s(t) / m(t) (EDM's sigma) `[B]`."""
        m, s = self.sde.marginal_coeffs(t)
        return s / m

    def kernel(self, x0: Tensor, t: Tensor, z: Tensor) -> Tensor:
        m, s = self.sde.marginal_coeffs(t.to(x0.dtype))
        return expand_as_batch(m, x0) * x0 + expand_as_batch(s, x0) * z

    def _apply(self, x0, t):
        if self.z is None:
            raise ValueError("the gaussian degradation needs its noise fixed first: D.with_noise(z)")
        if self.z.shape != x0.shape:
            raise ValueError(f"fixed noise z has shape {tuple(self.z.shape)}, x0 has {tuple(x0.shape)}")
        return self.kernel(x0, t, self.z.to(x0.dtype))

    def training_input(self, x0, t, generator=None):
        self.check(x0, t)
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return self.kernel(x0, t, z)

    def sampling_pair(self, restore):
        """The noise re-estimated from the state at every step (`reestimated_noise_pair`)."""
        return reestimated_noise_pair(self.sde, restore)

    def __repr__(self):
        return f"GaussianNoise(shape={self.shape}, sde={type(self.sde).__name__})"


def reestimated_noise_pair(sde, restore: Callable[[Tensor, Tensor], Tensor]):
    """(degrade, restore') for the Gaussian kernel with the noise re-estimated from the state:
    restore'(x, t) = x0_hat = restore(x, t), recording z_hat = (x - m(t) x0_hat) / s(t);
    degrade(x0, t) = m(t) x0 + s(t) z_hat. Then D(x0_hat, s) = x_s, and Algorithm 2 moves to
    m(s') x0_hat + s(s') z_hat: the DDIM (eta = 0) update (Song, Meng & Ermon 2021, eq. 12).
    The pair keeps z_hat of the last restore call: use it for one sampling loop at a time."""
    state = {}

    def restore_and_estimate(x, t):
        x0 = restore(x, t)
        m, s = sde.marginal_coeffs(t)
        state["z"] = (x - expand_as_batch(m, x) * x0) / expand_as_batch(s, x)
        return x0

    def degrade(x0, t):
        m, s = sde.marginal_coeffs(t)
        return expand_as_batch(m, x0) * x0 + expand_as_batch(s, x0) * state["z"]

    return degrade, restore_and_estimate
