"""Golden endpoints of the official sampler implementations, for tests/test_sampler_goldens.py.

Each reference sampler is driven, in float64 where it allows, by the exact score of a 3-D,
3-component Gaussian mixture under the linear VP SDE (beta 0.1..20, T = 1, eps = 1e-3), from
200 fixed x_T, on a grid written into the output; stochastic samplers get their noise from a
`solvers.NoiseSource` seeded with the row's `seed`, the stream scoresde's sampler draws too.
The output `tests/data/sampler_goldens.npz` holds the mixture, x_T and, per row, the time grid,
the reference's endpoint and NFE, and a JSON manifest naming the scoresde sampler and options
that must reproduce it (to 1e-9 relative; 1e-5 for diffusers, which steps in float32).

Not run in CI, and no reference code is kept in this repository. To regenerate:

1. The official single files, from clones of the public GitHub repositories:
       LuChengTHU/dpm-solver   dpm_solver_pytorch.py   -> REFSRC/dpm_solver_pytorch.py
       wl-zhao/UniPC           uni_pc.py               -> REFSRC/uni_pc.py
   e.g. `git --git-dir=CLONE/.git show HEAD:dpm_solver_pytorch.py > REFSRC/dpm_solver_pytorch.py`.
2. k-diffusion and diffusers in a throwaway venv outside the repository:
       python -m venv --system-site-packages /tmp/refvenv
       /tmp/refvenv/bin/pip install --no-deps k-diffusion==0.1.1.post1 diffusers==0.42.1 \\
           huggingface_hub httpx2 httpcore2==2.16.2 anyio idna truststore h11 sniffio certifi \\
           pyyaml click safetensors importlib_metadata zipp
   (diffusers' scheduler import needs huggingface_hub and its small pure-python deps;
   k-diffusion's package __init__ needs torchvision and scikit-image, so only its
   `sampling.py` is loaded, with its one helper `utils.append_dims` shimmed.)
3. From the repository root:
       PYTHONPATH=. /tmp/refvenv/bin/python tools/make_sampler_goldens.py --refsrc REFSRC

Versions used for the committed file: dpm-solver at commit 52bc3fbcd5de, UniPC at commit cf9de85bf2ed,
k-diffusion 0.1.1.post1, diffusers 0.42.1. Regenerating gives the same arrays bit for bit.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

from models.analytic import make_mixture
from sde_lib import VPSDE
from solvers import NoiseSource
from solvers.dpm_solver import fast_orders
from solvers.schedules import time_grid

B, D, K = 200, 3, 3
EPS = 1e-3
ROWS, ARRAYS = [], {}


# ---- the problem --------------------------------------------------------------------------------
def problem():
    sde = VPSDE(beta_min=0.1, beta_max=20.0)
    gm = make_mixture("random", D=D, K=K, scale=2.0, std=0.5, generator=torch.Generator().manual_seed(19))
    x_T = sde.prior_sampling((B, D), generator=torch.Generator().manual_seed(190), dtype=torch.float64)
    return sde, gm, x_T


SDE, GM, X_T = problem()
SCORE = GM.score_fn(SDE)


def mt_st(t):
    m, s = SDE.marginal_coeffs(t.double())
    return m, s


class Counter:
    """Counts model calls and records the times they were made at."""

    def __init__(self):
        self.nfe, self.times = 0, []

    def __call__(self, t):
        self.nfe += 1
        self.times.append(float(t.reshape(-1)[0]))


def add(row_id, ref, tol, grid, x, nfe, sampler, options, denoise=False, seed=None, api=None):
    """Record one golden row. `grid` [n+1] decreasing times; `options` for scoresde's sampler;
    `api`: sample() keywords that give the same grid (checked by the test)."""
    grid = torch.as_tensor(grid, dtype=torch.float64)
    assert bool((grid[1:] < grid[:-1]).all()), row_id
    ARRAYS[f"{row_id}/ts"] = grid.numpy()
    ARRAYS[f"{row_id}/x"] = x.detach().double().numpy()
    ROWS.append(dict(id=row_id, reference=ref, tol=tol, nfe=int(nfe), sampler=sampler, options=options,
                     denoise=denoise, seed=seed, api=api))
    print(f"{row_id:42s} nfe={nfe:3d} |x|max={x.abs().max().item():.3f}", flush=True)


def step_starts(call_times, nfe, order=3):
    """The times DPM-Solver-fast's steps start at, from the times of its model calls."""
    idx = np.cumsum([0] + fast_orders(nfe, order)[:-1])
    return [call_times[i] for i in idx]


def load(path, name, patch=None):
    src = Path(path).read_text()
    if patch:
        old, new = patch
        assert src.count(old) == 1, f"patch target not found once in {path}"
        src = src.replace(old, new)
    mod = types.ModuleType(name)
    exec(compile(src, str(path), "exec"), mod.__dict__)
    return mod


# ---- official DPM-Solver ------------------------------------------------------------------------
D2_REF = "D2 = (1. / (r0 + r1)) * (D1_0 - D1_1)\n        if self.algorithm_type"
D2_TAYLOR = "D2 = (2. / (r0 + r1)) * (D1_0 - D1_1)\n        if self.algorithm_type"


def official_dpm_solver(refsrc):
    dpm = load(refsrc / "dpm_solver_pytorch.py", "dpm_solver_pytorch")
    dpm_taylor = load(refsrc / "dpm_solver_pytorch.py", "dpm_solver_taylor", patch=(D2_REF, D2_TAYLOR))
    ns = dpm.NoiseScheduleVP("linear", continuous_beta_0=0.1, continuous_beta_1=20.0)

    def run(module, algorithm, **kw):
        c = Counter()

        def noise_fn(x, t):
            c(t)
            return -mt_st(t)[1][:, None] * SCORE(x, t)
        solver = module.DPM_Solver(noise_fn, ns, algorithm_type=algorithm)
        x = solver.sample(X_T.clone(), t_start=1.0, t_end=EPS, **kw)
        return x, c

    ref = "official dpm-solver (dpm_solver_pytorch.py)"
    # singlestep, one order throughout ('singlestep_fixed'), logSNR grid: dpm_solver split="fixed"
    for order in (1, 2, 3):
        x, c = run(dpm, "dpmsolver", steps=12, order=order, skip_type="logSNR", method="singlestep_fixed")
        outer = c.times[::order] + [EPS]
        add(f"dpm_solver_fixed_o{order}_nfe12", ref, 1e-9, outer, x, c.nfe, "dpm_solver",
            dict(order=order, split="fixed"), api=dict(steps=12 // order, schedule="logsnr"))
    # DPM-Solver-fast ('singlestep'), logSNR grid: K equal lambda-steps; the grid is the step starts
    for nfe in (9, 10, 20):
        x, c = run(dpm, "dpmsolver", steps=nfe, order=3, skip_type="logSNR", method="singlestep")
        add(f"dpm_solver_fast_o3_logsnr_nfe{nfe}", ref, 1e-9, step_starts(c.times, nfe) + [EPS], x, c.nfe,
            "dpm_solver", dict(order=3, split="fast"), api=dict(steps=nfe, schedule="logsnr"))
    # multistep DPM-Solver++ (2M, 3M), official thresholds (lower order final below 10 steps)
    for order, steps, skip, extra in ((2, 8, "logSNR", {}), (2, 12, "logSNR", {}), (3, 8, "logSNR", {}),
                                      (3, 12, "logSNR", {}), (2, 20, "time_uniform", {}),
                                      (2, 12, "logSNR", dict(denoise_to_zero=True)),
                                      (3, 12, "logSNR", dict(solver_type="taylor"))):
        x, c = run(dpm, "dpmsolver++", steps=steps, order=order, skip_type=skip, method="multistep", **extra)
        denoise = extra.get("denoise_to_zero", False)
        grid = c.times[:steps] + [EPS]
        name = "dpmpp_2m" if order == 2 else "dpmpp_3m"
        opts = dict(lower_order_final="dpm_solver")
        if order == 3:
            opts["variant"] = "reference"
        if "solver_type" in extra:
            opts["solver_type"] = "taylor"
        sched = "logsnr" if skip == "logSNR" else "uniform"
        tag = "".join(f"_{k}" for k in extra)
        add(f"{name}_{sched}_s{steps}{tag}", ref, 1e-9, grid, x, c.nfe, name, opts, denoise=denoise,
            api=dict(steps=steps, schedule=sched))
    # the Taylor-consistent 3M: the official code with its D2 doubled
    for steps in (8, 12, 40):
        x, c = run(dpm_taylor, "dpmsolver++", steps=steps, order=3, skip_type="logSNR", method="multistep")
        add(f"dpmpp_3m_taylor_logsnr_s{steps}", ref + ", D2 doubled", 1e-9, c.times[:steps] + [EPS], x, c.nfe,
            "dpmpp_3m", dict(variant="taylor", lower_order_final="dpm_solver"),
            api=dict(steps=steps, schedule="logsnr"))
    x, c = run(dpm, "dpmsolver++", steps=40, order=3, skip_type="logSNR", method="multistep")
    add("dpmpp_3m_logsnr_s40", ref, 1e-9, c.times[:40] + [EPS], x, c.nfe, "dpmpp_3m",
        dict(variant="reference", lower_order_final="dpm_solver"), api=dict(steps=40, schedule="logsnr"))


# ---- official UniPC -----------------------------------------------------------------------------
def official_unipc(refsrc):
    up = load(refsrc / "uni_pc.py", "uni_pc")
    ns = up.NoiseScheduleVP("linear", continuous_beta_0=0.1, continuous_beta_1=20.0)
    ref = "official UniPC (uni_pc.py)"

    def run(variant, **kw):
        c = Counter()

        def noise_fn(x, t):            # uni_pc.py wants image-shaped x: [B, D, 1, 1]
            c(t)
            return (-mt_st(t)[1][:, None] * SCORE(x.reshape(B, D), t)).reshape(x.shape)
        solver = up.UniPC(noise_fn, ns, algorithm_type="data_prediction", variant=variant)
        with contextlib.redirect_stdout(io.StringIO()):        # it prints on every step
            x = solver.sample(X_T.clone().reshape(B, D, 1, 1), t_start=1.0, t_end=EPS, method="multistep", **kw)
        return x.reshape(B, D), c

    for variant in ("bh1", "bh2"):
        for order in (1, 2, 3):
            x, c = run(variant, steps=10, order=order, skip_type="logSNR", lower_order_final=True)
            add(f"unipc_{variant}_o{order}_logsnr_s10", ref, 1e-9, c.times[:10] + [EPS], x, c.nfe, "unipc",
                dict(order=order, variant=variant, lower_order_final="unipc"), api=dict(steps=10, schedule="logsnr"))
    x, c = run("bh2", steps=20, order=3, skip_type="logSNR", lower_order_final=False)
    add("unipc_bh2_o3_logsnr_s20_nolof", ref, 1e-9, c.times[:20] + [EPS], x, c.nfe, "unipc",
        dict(order=3, variant="bh2", lower_order_final=False), api=dict(steps=20, schedule="logsnr"))
    # its default run: order 2, bh1, time-uniform grid, 20 steps
    x, c = run("bh1", steps=20, order=2, skip_type="time_uniform", lower_order_final=True)
    add("unipc_bh1_o2_uniform_s20", ref, 1e-9, c.times[:20] + [EPS], x, c.nfe, "unipc",
        dict(order=2, variant="bh1", lower_order_final="unipc"), api=dict(steps=20, schedule="uniform"))


# ---- k-diffusion --------------------------------------------------------------------------------
def k_diffusion_sampling():
    spec = importlib.util.find_spec("k_diffusion")
    pkg_dir = Path(spec.submodule_search_locations[0])
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [str(pkg_dir)]
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]    # the one helper sampling uses
    pkg.utils = utils
    sys.modules.update({"k_diffusion": pkg, "k_diffusion.utils": utils})
    return load(pkg_dir / "sampling.py", "k_diffusion.sampling")


def k_diffusion(version):
    kd = k_diffusion_sampling()
    ref = f"k-diffusion {version} (sampling.py)"

    def run(fn, schedule, steps, seed=None, **kw):
        """Run a k-diffusion sampler in (x/m, sigma) on scoresde's grid; returns x = m x_hat."""
        ts = time_grid(SDE, steps, schedule=schedule, dtype=torch.float64)
        sigmas = SDE.edm_sigma(ts)
        c = Counter()

        def denoiser(xh, sigma):
            t = SDE.t_from_edm_sigma(sigma.double())
            c(t)
            m, s = mt_st(t)
            x = m[:, None] * xh
            return (x + (s * s)[:, None] * SCORE(x, t)) / m[:, None]
        if seed is not None:
            noise = NoiseSource((B, D), torch.float64, "cpu", generator=torch.Generator().manual_seed(seed))
            kw["noise_sampler"] = lambda sigma, sigma_next: noise.randn()
        m = mt_st(ts)[0]
        xh = fn(denoiser, X_T.clone() / m[0], sigmas, disable=True, **kw)
        return ts, m[-1] * xh, c

    cases = [  # (id, k-diffusion fn, kwargs, seed, scoresde sampler, options, schedule)
        ("kd_euler_uniform_s12", kd.sample_euler, {}, None, "ddim", dict(eta=0.0), "uniform"),
        ("kd_heun_karras_s12", kd.sample_heun, {}, None, "edm", {}, "karras"),
        ("kd_euler_ancestral_karras_s12", kd.sample_euler_ancestral, {}, 7, "euler_ancestral", {}, "karras"),
        ("kd_dpmpp_2m_logsnr_s12", kd.sample_dpmpp_2m, {}, None, "dpmpp_2m",
         dict(lower_order_final="k_diffusion"), "logsnr"),
        ("kd_dpmpp_3m_eta0_logsnr_s12", kd.sample_dpmpp_3m_sde, dict(eta=0.0, noise_sampler=lambda *a: None), None,
         "dpmpp_3m",
         dict(variant="reference", solver_type="taylor", lower_order_final="k_diffusion"), "logsnr"),
        ("kd_dpmpp_2m_sde_logsnr_s12", kd.sample_dpmpp_2m_sde, dict(eta=1.0), 11, "dpmpp_2m_sde",
         dict(eta=1.0, lower_order_final="k_diffusion"), "logsnr"),
        ("kd_dpmpp_2m_sde_heun_logsnr_s12", kd.sample_dpmpp_2m_sde, dict(eta=1.0, solver_type="heun"), 12,
         "dpmpp_2m_sde", dict(eta=1.0, solver_type="taylor", lower_order_final="k_diffusion"), "logsnr"),
        ("kd_dpmpp_2m_sde_eta05_logsnr_s12", kd.sample_dpmpp_2m_sde, dict(eta=0.5), 13, "dpmpp_2m_sde",
         dict(eta=0.5, lower_order_final="k_diffusion"), "logsnr"),
    ]
    for row_id, fn, kw, seed, name, opts, schedule in cases:
        ts, x, c = run(fn, schedule, 12, seed=seed, **kw)
        add(row_id, ref, 1e-9, ts, x, c.nfe, name, opts, seed=seed, api=dict(steps=12, schedule=schedule))
    # DPM-Solver-fast: k-diffusion's own grid (equal steps in log sigma = lambda)
    for nfe in (10, 20):
        sig = SDE.edm_sigma(torch.tensor([1.0, EPS], dtype=torch.float64))
        c = Counter()

        def denoiser(xh, sigma):
            t = SDE.t_from_edm_sigma(sigma.double().reshape(-1).expand(B))
            c(t)
            m, s = mt_st(t)
            x = m[:, None] * xh
            return (x + (s * s)[:, None] * SCORE(x, t)) / m[:, None]
        m_T, m_e = mt_st(torch.tensor([1.0, EPS], dtype=torch.float64))[0]
        xh = kd.sample_dpm_fast(denoiser, X_T.clone() / m_T, float(sig[1]), float(sig[0]), nfe, disable=True)
        add(f"kd_dpm_fast_nfe{nfe}", ref, 1e-9, step_starts(c.times, nfe) + [EPS], m_e * xh, c.nfe, "dpm_solver",
            dict(order=3, split="fast"), api=dict(steps=nfe, schedule="logsnr"))


# ---- diffusers ----------------------------------------------------------------------------------
def diffusers_rows(version):
    import diffusers
    ref = f"diffusers {version}"
    N = 1000
    # the discrete chain of this VP SDE: alphas_cumprod[k] = m((k + 1)/N)^2
    m, _ = mt_st(torch.arange(1, N + 1, dtype=torch.float64) / N)
    ac = (m ** 2).numpy()
    betas = 1.0 - ac / np.concatenate([[1.0], ac[:-1]])

    sigma_T = float(SDE.edm_sigma(torch.tensor([1.0], dtype=torch.float64)))

    def t_of_sigma(sigma):      # float32 rounding can put diffusers' first sigma just above sigma(T)
        return SDE.t_from_edm_sigma(torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).clamp(max=sigma_T))

    def t_of_ac(a):
        a = torch.as_tensor(a, dtype=torch.float64).reshape(-1)
        return t_of_sigma(((1 - a) / a).sqrt())

    def run(sched, steps, sigma_of_call):
        """Standard diffusers loop; the eps model is evaluated at the time of the sigma the scheduler
        itself uses for that call (its float32 alphas_cumprod), and the grid is those times."""
        sched.set_timesteps(steps)
        c, x = Counter(), X_T.clone()
        for i, ts_ in enumerate(sched.timesteps):
            t = sigma_of_call(sched, i, ts_).expand(B)
            c(t)
            eps = -mt_st(t)[1][:, None] * SCORE(x, t)
            x = sched.step(eps, ts_, x).prev_sample.double()
        return x, c

    common = dict(num_train_timesteps=N, trained_betas=betas)
    from_sigmas = lambda s, i, t_: t_of_sigma(s.sigmas[i])
    for order in (2, 3):
        sch = diffusers.DPMSolverMultistepScheduler(**common, solver_order=order, algorithm_type="dpmsolver++",
                                                    final_sigmas_type="sigma_min")
        x, c = run(sch, 12, from_sigmas)
        grid = t_of_sigma(sch.sigmas)
        name = "dpmpp_2m" if order == 2 else "dpmpp_3m"
        opts = dict(lower_order_final="diffusers")
        if order == 3:
            opts["variant"] = "reference"
        add(f"diffusers_dpmsolver_multistep_o{order}_s12", ref + " DPMSolverMultistepScheduler", 1e-5, grid, x,
            c.nfe, name, opts)
    # its default final_sigmas_type="zero": the last step is first order to sigma = 0, i.e. x0_hat at the
    # last timestep = denoise=True on the grid without its final point (2M: no other lowered step)
    sch = diffusers.DPMSolverMultistepScheduler(**common, solver_order=2, algorithm_type="dpmsolver++")
    x, c = run(sch, 12, from_sigmas)
    add("diffusers_dpmsolver_multistep_o2_s12_zero", ref + " DPMSolverMultistepScheduler", 1e-5,
        t_of_sigma(sch.sigmas[:-1]), x, c.nfe, "dpmpp_2m", dict(lower_order_final=False), denoise=True)
    for order in (2, 3):
        sch = diffusers.UniPCMultistepScheduler(**common, solver_order=order, solver_type="bh2",
                                                final_sigmas_type="sigma_min")
        x, c = run(sch, 12, from_sigmas)
        add(f"diffusers_unipc_o{order}_s12", ref + " UniPCMultistepScheduler", 1e-5,
            t_of_sigma(sch.sigmas), x, c.nfe, "unipc",
            dict(order=order, variant="bh2", lower_order_final="diffusers_unipc"))
    # DDIM steps t -> t - N // steps: consistent on its "leading" grid; steps_offset=1 ends at t = 1/N
    sch = diffusers.DDIMScheduler(**common, set_alpha_to_one=False, clip_sample=False, timestep_spacing="leading",
                                  steps_offset=1)
    x, c = run(sch, 12, lambda s, i, t_: t_of_ac(s.alphas_cumprod[int(t_)].double()))
    grid = torch.cat([t_of_ac(sch.alphas_cumprod[sch.timesteps.long()].double()), t_of_ac(sch.alphas_cumprod[0])])
    add("diffusers_ddim_s12", ref + " DDIMScheduler", 1e-5, grid, x, c.nfe, "ddim", dict(eta=0.0))
    # eta = 1 on scoresde's noise stream (diffusers' `variance_noise`)
    noise = NoiseSource((B, D), torch.float64, "cpu", generator=torch.Generator().manual_seed(14))
    sch.set_timesteps(12)
    c, x = Counter(), X_T.clone()
    for ts_ in sch.timesteps:
        t = t_of_ac(sch.alphas_cumprod[int(ts_)].double()).expand(B)
        c(t)
        eps = -mt_st(t)[1][:, None] * SCORE(x, t)
        x = sch.step(eps, ts_, x, eta=1.0, variance_noise=noise.randn()).prev_sample.double()
    add("diffusers_ddim_eta1_s12", ref + " DDIMScheduler", 1e-5, grid, x, c.nfe, "ddim", dict(eta=1.0), seed=14)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refsrc", type=Path, required=True, help="folder with dpm_solver_pytorch.py and uni_pc.py")
    p.add_argument("--out", type=Path, default=Path("tests/data/sampler_goldens.npz"))
    a = p.parse_args()
    for f in ("dpm_solver_pytorch.py", "uni_pc.py"):
        if not (a.refsrc / f).is_file():
            sys.exit(f"error: {a.refsrc / f} not found (see this script's docstring for where to get it)")
    from importlib.metadata import version
    torch.set_default_dtype(torch.float64)        # the official files build their grids in the default dtype
    official_dpm_solver(a.refsrc)
    official_unipc(a.refsrc)
    k_diffusion(version("k-diffusion"))
    torch.set_default_dtype(torch.float32)        # diffusers builds its coefficients in float32 throughout
    diffusers_rows(version("diffusers"))
    gm = GM
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, manifest=np.array(json.dumps(ROWS)), x_T=X_T.numpy(), weights=gm.weights.numpy(),
                        means=gm.means.numpy(), covs=gm.covs.numpy(), **ARRAYS)
    print(f"{len(ROWS)} rows -> {a.out} ({a.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
