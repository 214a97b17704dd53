"""The network -> score parameterisation: one object, chosen by config (EDM's preconditioning
in spirit: Karras et al. 2022, Table 1, where one object owns c_in / c_out / c_noise).

A network `net(u, c)` knows nothing of SDEs. This object decides what it sees and what its
output means, from three config fields (`model.prediction`, `model.label`,
`model.data_range`), so a published model trained under another convention plugs in
unchanged.

**Data units.** The SDE lives on data in [-1, 1]: x_t = m(t) x_0 + s(t) z. A network trained
on data in [0, 1] (`data_range = (0, 1)`; score_sde's VE CIFAR-10 models) sees its own units:
with x_0 = a u_0 + b (a = 2, b = -1),

    u = (x_t - b m) / a = m u_0 + s_u z,    s_u = s / a,    sigma_u = s_u / m,

so score_sde's VE sigma range 0.01..50 on [0, 1] is sigma 0.02..100 here. On [-1, 1] the
map is the identity (a = 1, b = 0) and is skipped.

**Prediction** (what net(u, c) estimates) -> score in the network's units, score_u:

| prediction    | ideal output                  | score_u                                  |
|---------------|-------------------------------|------------------------------------------|
| `eps`         | E[z | u]                      | -f / s_u                                 |
| `x0`          | E[u_0 | u]                    | (m f - u) / s_u^2                        |
| `v`           | E[m z - s_u u_0 | u]          | -(s_u u + m f) / (s_u (m^2 + s_u^2))     |
| `score_sigma` | s_u score_u = -E[z | u]       | f / s_u                                  |
| `score`       | score_u                       | f                                        |

then score(x_t) = score_u / a (chain rule). `v` is Salimans & Ho's (2022) v = m z - s u_0,
for any (m, s) (VP has m^2 + s^2 = 1). The x0 row is Tweedie's formula; the v row solves
u = m u_0 + s_u z and v = m z - s_u u_0 for z.

**Label** (the scalar c the network is conditioned on), `[B] -> [B]`:

| label           | c                                                                  |
|-----------------|--------------------------------------------------------------------|
| `t`             | t                                                                  |
| `t999`          | 999 t (score_sde's continuous VP / sub-VP models)                  |
| `log_sigma`     | log sigma_u (on [-1, 1] with VE: log sigma(t))                     |
| `sigma`         | sigma_u                                                            |
| `discrete_step` | the fractional step k in [0, N-1] of the SDE's N-step chain whose  |
|                 | log-SNR equals the network's lambda_u = lambda(t) + log a          |
|                 | (`models.discrete.DiscreteTimeLabel`; DDPM's 1000 integer steps)   |

`"auto"` (the default of both fields) is the SDE class's own declared choice
(`SDE.default_parameterization`): VP and sub-VP `eps` with label `t`, VE `score_sigma` with
label `log_sigma`, exactly what every run directory made before these fields existed used.
An SDE class that declares none gets a ValueError, never another SDE's parameterisation.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

import sde_lib
from sde_lib import expand_as_batch

from .discrete import DiscreteTimeLabel

Tensor = torch.Tensor

PREDICTIONS = ("auto", "eps", "x0", "v", "score_sigma", "score")
LABELS = ("auto", "t", "t999", "log_sigma", "sigma", "discrete_step")
DATA_RANGES = ((-1.0, 1.0), (0.0, 1.0))


def check_parameterization(prediction, label, data_range) -> Tuple[float, float]:
    """ValueError naming the first bad field of `config.model`, its value and what was expected
    (`configs.schema.validate_model` checks the same before any work); the data range as floats."""
    for field, value, choices in (("prediction", prediction, PREDICTIONS), ("label", label, LABELS)):
        if value not in choices:
            raise ValueError(f"config.model.{field} must be one of {list(choices)}, got {value!r}")
    rng = data_range_of(data_range)
    if rng is None:
        raise ValueError(f"config.model.data_range must be one of {[list(r) for r in DATA_RANGES]}, "
                         f"got {data_range!r}")
    return rng


def data_range_of(value) -> Optional[Tuple[float, float]]:
    """`value` as one of `DATA_RANGES` (floats), or None if it is not one of them."""
    try:
        rng = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return rng if rng in DATA_RANGES else None


class Parameterization:
    """Maps a network's output to the score of `sde` (see the module docstring for the tables).

    Args:
        sde:        the SDE (gives m(t), s(t), its default choice and its discrete chain).
        prediction: one of `PREDICTIONS`; "auto": the SDE's default.
        label:      one of `LABELS`; "auto": the SDE's default.
        data_range: (-1, 1) or (0, 1): the data units the network was trained on.

    `p(net, x, t, *args)` evaluates net(u, c, *args) and returns the score `[B, *dims]`;
    `p.net_input(x, t)` gives (u, c); `p.score(out, x, t)` maps an output to the score;
    `p.target(score, x, t)` is its inverse (the ideal output for a given score).
    """

    def __init__(self, sde: sde_lib.SDE, prediction: str = "auto", label: str = "auto",
                 data_range=(-1.0, 1.0)):
        rng = check_parameterization(prediction, label, data_range)
        if prediction == "auto" or label == "auto":
            default_prediction, default_label = sde.default_parameterization()
            prediction = default_prediction if prediction == "auto" else prediction
            label = default_label if label == "auto" else label
        self.sde, self.prediction, self.label, self.data_range = sde, prediction, label, rng
        self.a = 2.0 / (rng[1] - rng[0])             # x_0 = a u_0 + b
        self.b = -1.0 - self.a * rng[0]
        self.identity = rng == (-1.0, 1.0)
        self.discrete = None
        if label == "discrete_step":
            self.discrete = DiscreteTimeLabel(sde.discrete_log_snrs())

    @classmethod
    def from_config(cls, sde: sde_lib.SDE, config) -> "Parameterization":
        """From `config.model` (or a model block): `prediction`, `label`, `data_range` (absent: defaults)."""
        m = config.model if hasattr(config, "model") else config
        return cls(sde, m.get("prediction", "auto"), m.get("label", "auto"), m.get("data_range", (-1.0, 1.0)))

    def __repr__(self):
        return (f"Parameterization({type(self.sde).__name__}, prediction={self.prediction!r}, "
                f"label={self.label!r}, data_range={self.data_range})")

    # ---- pieces ------------------------------------------------------------------------------
    def _units(self, x: Tensor, t: Tensor):
        """(m `[B]`, s_u `[B]`, u `[B, *dims]`): the network's data units."""
        m, s = self.sde.marginal_coeffs(t)
        if self.identity:
            return m, s, x
        return m, s / self.a, (x - self.b * expand_as_batch(m, x)) / self.a

    def noise_label(self, t: Tensor, m: Optional[Tensor] = None, s_u: Optional[Tensor] = None) -> Tensor:
        """The label c `[B]` for times t `[B]`."""
        if self.label == "t":
            return t
        if self.label == "t999":
            return 999.0 * t
        if m is None:
            m, s = self.sde.marginal_coeffs(t)
            s_u = s if self.identity else s / self.a
        sigma_u = s_u / m
        if self.label == "log_sigma":
            return torch.log(sigma_u)
        if self.label == "sigma":
            return sigma_u
        return self.discrete.step(-torch.log(sigma_u)).to(t.dtype)     # lambda_u = -log sigma_u

    def net_input(self, x: Tensor, t: Tensor) -> Tuple[Tensor, Tensor]:
        """(u `[B, *dims]`, c `[B]`): what the network is called with at (x_t, t)."""
        m, s_u, u = self._units(x, t)
        return u, self.noise_label(t, m, s_u)

    def _score_u(self, out, u, m, s_u):
        p = self.prediction
        s_u, m = expand_as_batch(s_u, out), expand_as_batch(m, out)
        if p == "eps":
            return -out / s_u
        if p == "score_sigma":
            return out / s_u
        if p == "score":
            return out
        if p == "x0":
            return (m * out - u) / s_u ** 2
        return -(s_u * u + m * out) / (s_u * (m ** 2 + s_u ** 2))              # v

    def score(self, out: Tensor, x: Tensor, t: Tensor) -> Tensor:
        """The score `[B, *dims]` of x_t given the network output `out` at (x, t)."""
        m, s_u, u = self._units(x, t)
        return self._from_units(self._score_u(out, u, m, s_u))

    def _from_units(self, score_u):
        return score_u if self.identity else score_u / self.a

    def target(self, score: Tensor, x: Tensor, t: Tensor) -> Tensor:
        """The network output that gives `score` at (x, t): the inverse of `score` (ideal outputs)."""
        m, s_u, u = self._units(x, t)
        sc = score if self.identity else score * self.a
        m, s_u = expand_as_batch(m, sc), expand_as_batch(s_u, sc)
        p = self.prediction
        if p == "eps":
            return -s_u * sc
        if p == "score_sigma":
            return s_u * sc
        if p == "score":
            return sc
        x0 = (u + s_u ** 2 * sc) / m
        if p == "x0":
            return x0
        return m * (-s_u * sc) - s_u * x0                                       # v = m z - s_u u_0

    def __call__(self, net: Callable, x: Tensor, t: Tensor, *args) -> Tensor:
        """score(x, t) = the score the output of net(u, c, *args) stands for."""
        m, s_u, u = self._units(x, t)
        out = net(u, self.noise_label(t, m, s_u), *args)
        return self._from_units(self._score_u(out, u, m, s_u))

