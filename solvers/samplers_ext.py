"""Self-stepping samplers that hand the integration to torchdiffeq (`ode`) and torchsde (`sde`).

Registered with `schedule=None`: they take `eps` and integrate from T themselves
(uniform steps for their fixed-step methods; `steps=None` means `sde.N`).
"""
from __future__ import annotations

from .ode import run_ode
from .sampling import register_sampler
from .sdeint import run_sdeint


def ode(sde, score, x, eps, noise, info, progress, return_trajectory, **options):
    """Probability-flow ODE with torchdiffeq (`method`: "rk45" = dopri5 with Dormand-Prince's error
    estimate, or a torchdiffeq method; `rtol`, `atol`, `norm` ("batch" | "sample" | "mixed", see
    solvers.ode) for adaptive methods; `steps` for fixed-grid methods)."""
    opts = dict(options)
    x = run_ode(sde, score, x, eps, noise, info, opts, progress, return_trajectory)
    info.options.update(opts)
    return x


def sde_(sde, score, x, eps, noise, info, progress, return_trajectory, **options):
    """Reverse SDE with torchsde (`method`, `steps` or `dt`, `adaptive`, `rtol`, `atol`, `brownian`)."""
    opts = dict(options)
    x = run_sdeint(sde, score, x, eps, noise, info, opts, progress, return_trajectory)
    info.options.update(opts)
    return x


register_sampler("ode", ode, options={"method": "rk45", "rtol": 1e-5, "atol": 1e-5, "steps": None,
                                       "norm": "batch"},
                 schedule=None)
register_sampler("sde", sde_, options={"method": "euler", "steps": None, "dt": None, "adaptive": False,
                                       "rtol": 1e-5, "atol": 1e-4, "brownian": None}, schedule=None)
