"""The reverse-time SDE through torchsde (`sampler="sde"`).

torchsde integrates forward in time on 2-D states `[B, D]`. With s = T - t and
y(s) = x(T - s) flattened to `[B, D]`, the reverse SDE (t running down)

    dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dw_bar

becomes an Ito SDE in s running up from 0 to T - eps:

    dy = -[f(y, T - s) - g(T - s)^2 score(y, T - s)] ds + g(T - s) dW_s,

with diagonal noise (g is the same for every coordinate; torchsde's "scalar"
noise would share one Brownian motion across coordinates, a different SDE,
and "additive" would need a `[B, D, D]` diffusion matrix).

Brownian motion:
* "stream" (default for fixed steps with euler/milstein): increments
  sqrt(ds) z with z from the sampler's `NoiseSource`, queried once per step,
  in order. No tree, no cache, and it honours `seeds` (per-sample streams);
  with the same generator, method="euler" reproduces `sampler="euler_maruyama"`.
* "interval": torchsde's `BrownianInterval` (needed by `srk`, which asks for
  space-time Levy area, and by adaptive stepping, which revisits intervals),
  seeded from `generator`.
"""
from __future__ import annotations

import math

import torch

from ._common import check_choice, check_positive, check_steps, quiet

METHODS = ("euler", "milstein", "srk")


class _ReversedSDE(torch.nn.Module):
    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, sde, score, shape, eps):
        super().__init__()
        self.rsde = sde.reverse(score, probability_flow=False)
        self.shape = shape
        self.T, self.eps = sde.T, eps

    def _t(self, s, y):
        t = torch.clamp(self.T - torch.as_tensor(s, dtype=y.dtype, device=y.device), self.eps, self.T)
        return t.expand(y.shape[0])

    def f(self, s, y):
        drift, _ = self.rsde.sde(y.reshape(self.shape), self._t(s, y))
        return -drift.reshape(y.shape[0], -1)

    def g(self, s, y):
        g = self.rsde.forward.diffusion_coeff(self._t(s, y))
        return g[:, None].expand_as(y)


class StreamBrownian:
    """A Brownian path that hands out sqrt(tb - ta) z for consecutive intervals, z from a NoiseSource."""

    def __init__(self, noise, t0: float, size):
        self.noise, self._last, self._size = noise, float(t0), tuple(size)
        self._dtype, self._device = noise.dtype, noise.device

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        if tb is None or return_U or return_A:
            raise ValueError("the 'stream' Brownian motion only gives increments over consecutive "
                             "intervals (use brownian='interval' for srk or adaptive stepping)")
        ta, tb = float(ta), float(tb)
        if abs(ta - self._last) > 1e-9 * max(1.0, abs(ta)):
            raise ValueError(f"'stream' Brownian motion queried out of order: [{ta}, {tb}] after {self._last}")
        self._last = tb
        return math.sqrt(tb - ta) * self.noise.randn().reshape(self._size)

    # the attributes torchsde reads
    dtype = property(lambda self: self._dtype)
    device = property(lambda self: self._device)
    shape = property(lambda self: self._size)
    levy_area_approximation = property(lambda self: "none")


def run_sdeint(sde, score, x, eps, noise, info, opts, progress, return_trajectory):
    import torchsde

    method = check_choice("torchsde method", opts["method"], METHODS)
    adaptive = bool(opts["adaptive"])
    T = sde.T
    span = T - eps
    if opts["dt"] is not None:
        dt = check_positive("dt", opts["dt"])
        steps = max(1, math.ceil(span / dt - 1e-9))
    else:
        steps = check_steps(sde.N if opts["steps"] is None else opts["steps"])
        dt = span / steps
    opts["steps"], opts["dt"] = steps, dt
    brownian = opts["brownian"]
    if brownian is None:
        brownian = "stream" if (method != "srk" and not adaptive) else "interval"
    check_choice("brownian", brownian, ("stream", "interval"))
    if brownian == "stream" and (method == "srk" or adaptive):
        raise ValueError(f"brownian='stream' does not support method={method!r}/adaptive={adaptive}; "
                         f"use brownian='interval'")
    if brownian == "interval" and noise.generators is not None:
        raise ValueError("seeds (per-sample noise) need brownian='stream' (fixed steps, euler or milstein)")
    opts["brownian"] = brownian

    B = x.shape[0]
    y0 = x.reshape(B, -1)
    model = _ReversedSDE(quiet(sde), score, x.shape, eps)
    n_out = steps + 1 if return_trajectory else 2
    ts = torch.linspace(0.0, span, n_out, dtype=torch.float64, device=x.device)
    if brownian == "stream":
        bm = StreamBrownian(noise, 0.0, y0.shape)
    else:
        entropy = int(torch.randint(0, 2 ** 62, (1,), generator=noise.generator).item())
        bm = torchsde.BrownianInterval(t0=0.0, t1=span, size=y0.shape, dtype=x.dtype, device=x.device,
                                       entropy=entropy,
                                       levy_area_approximation="space-time" if method == "srk" else "none")
    options = {"grad_free": True} if method == "milstein" else None
    # Times run in float64 whatever x's dtype, and dt is a hair above span/steps so that rounding
    # in torchsde's running time never adds a vanishing extra step (the last step is cut at the
    # end point anyway). torchsde calls f once more at s=0 to check shapes: nfe = steps + 1.
    ys = torchsde.sdeint(model, y0, ts, bm=bm, method=method, dt=dt * (1 + 1e-12), adaptive=adaptive,
                         rtol=opts["rtol"], atol=opts["atol"], options=options)
    info.steps = None if adaptive else steps
    info.extra["brownian"] = brownian
    if return_trajectory:
        info.trajectory = ys.reshape(ys.shape[0], *x.shape)
        info.times = T - ts
    return ys[-1].reshape(x.shape)
