"""Hot against cold diffusion (Bansal et al. 2022) at equal training wall time: the study behind
`bench/cold_digits.py` and `bench/cold_fashion_mnist.py` (thin entry points with their data set's
settings in `STUDIES`).

Same data, same U-Net (label t), optimiser and batch for every model: the project's VP score model
("hot") and one restoration network per degradation (L1 loss). Equal wall time, not equal steps:
`--part cost` measures each model's seconds per training step side by side (`bench/step_cost.py`:
short alternating chunks, median and spread over rounds), sets the budget to the hot model's
`ref_steps` steps at its measured cost, and gives each model `steps = budget / its cost`; costs,
budget and steps go into the JSON (`training_plan`). A live wall-clock stop would be distorted by the
other jobs on a shared machine; alternating chunks see the same load.

Measured, each with its standard error:
1. generation: FD / KID / precision / recall in the project's own feature space over seeds, beside
   reference rows (floor: train vs test; a Gaussian fitted to train; the cold priors' mixture fitted to
   clean train, i.e. what the prior alone generates). Hot: DDIM (eta = 0) + Tweedie step. Cold:
   Algorithms 2 and 1 from x_T ~ `cold.prior` (a 10-component mixture fitted to D(train, T) plus noise
   0.002; the mask's fixed x_T plus noise);
2. diversity: distinct samples (quantised to the data's levels) out of n, and the mean RMSE between
   disjoint sample pairs (the floor row gives the data's own); the fully blurred variant `blur_full`
   (sigma_max = inf: x_T is the per-image mean plus noise) and its prior-noise ablation (digits);
3. restoration: RMSE to x0 of test images restored from D(x0, t), direct R / Algorithm 1 / 2;
4. wall time per sample, hot (DDIM) against cold (Algorithm 2) at equal steps, alternating.

    python bench/cold_digits.py --part cost     # step costs -> training plan (in the JSON)
    python bench/cold_digits.py --part train    # every model to its planned steps (resumable)
    python bench/cold_digits.py --part eval     # -> bench/results/cold_digits.json, .md, *_grids.png
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch

from bench.cold_study_report import markdown
from bench.cold_study_train import (NOISES, OUT, ROOT, STUDIES, TIMES, load, mean_se, plan_training, save,
                                     train_all, wall_time)

METRICS = ("fd", "kid", "precision", "recall", "density", "coverage", "distinct", "pair_rmse", "seconds")


def _runs(study, a):
    """{name: (config, model, step, wall seconds)} of the trained runs (EMA weights)."""
    from runner.rundir import load_saved_config
    from training import restore_model
    runs = {}
    for name in study.models:
        wd = os.path.join(a.workdir, name)
        config = load_saved_config(wd)
        if config is None:
            raise SystemExit(f"no trained run in {wd}: run --part train first")
        model, step, _ = restore_model(config, wd, use_ema=True)
        runs[name] = (config, model, step, wall_time(wd))
    return runs


def pair_rmse(x):
    """Mean RMSE between disjoint pairs (x[2i], x[2i + 1]): how far apart two samples are."""
    n = x.shape[0] // 2 * 2
    d = (x[0:n:2] - x[1:n:2]).reshape(n // 2, -1).double()
    return float(d.pow(2).mean(1).sqrt().mean())


def cold_cell(D, R, prior, seeds, steps, alg, mean_only=False):
    """run() -> (samples, nfe); mean_only: x_T replaced by its per-channel mean image (no noise, no
    jitter: the paper's deterministic full-blur prior, one number per channel)."""
    from solvers import cold_sample, cold_time_grid

    def run():
        xT = prior.sample(seeds)
        if mean_only:
            xT = xT.mean(dim=(2, 3), keepdim=True).expand_as(xT).contiguous()
        degrade, restore = D.sampling_pair(R)
        x, info = cold_sample(degrade, restore, xT, cold_time_grid(steps, D.T, dtype=torch.float32), alg)
        return x, info.nfe
    return run


def evaluate_all(study, a, path):
    import sde_lib
    import solvers
    from evaluation import FeatureSettings, SampleEvaluator, get_feature_extractor, quantise
    from models import get_restore_fn, get_score_fn
    from runner.cold import fit_prior
    from runner.compare import gaussian_sampler
    from solvers import DegradedPrior
    from training.data import get_dataset

    res = load(path)
    runs = _runs(study, a)
    config = runs["hot"][0]
    ds = get_dataset(config)
    n = min(a.num_samples, ds.test.shape[0], ds.train.shape[0])
    dims = tuple(ds.train.shape[1:])
    fit_set = ds.train[:study.prior_fit] if study.prior_fit else ds.train
    extractor = get_feature_extractor(ds, ds.labels, "", FeatureSettings(epochs=study.feature_epochs))
    evaluator = SampleEvaluator(ds.test[:n], extractor, ds.num_levels, seed=3)
    sde = sde_lib.get_sde(config)
    score_fn = get_score_fn(sde, runs["hot"][1])
    cold = {}
    for name in study.models[1:]:
        cfg, model, _, _ = runs[name]
        D = sde_lib.get_degradation(cfg)
        kind, prior = fit_prior(cfg, D, fit_set)
        cold[name] = (cfg, D, get_restore_fn(model), kind, prior)
        print(f"{name}: prior {kind} fitted to {fit_set.shape[0]} images", flush=True)
    res["meta"] = {"dataset": ds.name, "n": n, "steps": a.steps, "seeds": a.seeds, "reference": f"test split, first {n}",
                   "features": extractor.info, "threads": a.threads, "prior_fit_images": int(fit_set.shape[0]),
                   "training": {k: {"step": v[2], "wall_seconds": round(v[3], 1)} for k, v in runs.items()},
                   "degradations": {k: repr(v[1]) for k, v in cold.items()},
                   "priors": {k: v[3] for k, v in cold.items()}}
    gen_rows = res.setdefault("generation_cells", {})
    gaussian = gaussian_sampler(ds.train)
    # the cold priors' own generator on clean data: how far the mixture gets without any network
    mixture = DegradedPrior.fit(fit_set.double(), cold["blur"][4].means.shape[0], 0.0, seed=config.seed)

    def levels(x):
        q = quantise(x.float(), ds.num_levels or 256)
        return torch.unique(q.reshape(q.shape[0], -1), dim=0).shape[0]

    for seed in a.seeds:
        seeds = [1_000_003 * (seed + 1) + i for i in range(n)]
        gen = torch.Generator().manual_seed(1_000_003 * (seed + 1))
        cells = [("floor", lambda: (ds.train[torch.randperm(ds.train.shape[0], generator=gen)[:n]], 0)),
                 ("gaussian", lambda: (gaussian(n, gen), 0)),
                 ("mixture (prior's EM) on train", lambda: (mixture.sample(seeds), 0)),
                 ("hot ddim", lambda: _nfe(solvers.sample(sde, score_fn, (n, *dims), "ddim", steps=a.steps,
                                                          seeds=seeds, denoise=True, eta=0.0)))]
        for name, (cfg, D, R, kind, prior) in cold.items():
            for alg in ("improved", "naive"):
                cells.append((f"{name} {alg}", cold_cell(D, R, prior, seeds, a.steps, alg)))
        for name in study.ablations:
            cfg, D, R, kind, prior = cold[name]
            for noise in NOISES:
                if noise != prior.noise:
                    p2 = type(prior)(prior.weights, prior.means, prior.chols, prior.shape, noise)
                    cells.append((f"{name} improved, prior noise {noise:g}", cold_cell(D, R, p2, seeds, a.steps,
                                                                                        "improved")))
            cells.append((f"{name} improved, x_T = its mean image", cold_cell(D, R, prior, seeds, a.steps, "improved",
                                                                               mean_only=True)))
        for label, fn in cells:
            key = f"{label} | seed {seed} | n {n} | steps {a.steps}"
            if key in gen_rows:
                continue
            t0 = time.perf_counter()
            x, nfe = fn()
            row = {"label": label, "seed": seed, "nfe": nfe, "seconds": round(time.perf_counter() - t0, 3),
                   "distinct": levels(x), "pair_rmse": pair_rmse(x), **evaluator.evaluate(x.float())}
            row.pop("label_hist", None)
            gen_rows[key] = row
            print(f"{key}: fd={row['fd']:.3f} distinct={row['distinct']} pair_rmse={row['pair_rmse']:.3f} "
                  f"({row['seconds']:.1f}s)", flush=True)
            save(path, res)
    res["generation"] = _aggregate(r for k, r in gen_rows.items() if k.endswith(f"| n {n} | steps {a.steps}"))
    if "restoration" not in res:
        res["restoration"] = _restoration(ds, cold, n, a.steps)
        save(path, res)
    if "timing" not in res:
        res["timing"] = _timing(sde, score_fn, cold["blur"], n, dims, a)
        save(path, res)
    _grids(ds, cold, sde, score_fn, dims, a, study.tag)
    save(path, res)
    open(path.replace(".json", ".md"), "w").write(markdown(res))
    print(f"wrote {path} and {path.replace('.json', '.md')}")


def _nfe(out):
    x, info = out
    return x, info.nfe


def _aggregate(rows):
    out = {}
    for r in rows:
        out.setdefault(r["label"], []).append(r)
    agg = {}
    for label, rs in out.items():
        agg[label] = {"seeds": len(rs), "nfe": rs[0]["nfe"]}
        for k in METRICS:
            m, se = mean_se([r[k] for r in rs])
            agg[label][k], agg[label][k + "_stderr"] = m, se
    return agg


@torch.no_grad()
def _restoration(ds, cold, n, steps):
    """RMSE to x0 per degradation and t: degraded input, direct R, Algorithms 1 and 2 (SE over images)."""
    from solvers import cold_sample
    x0 = ds.test[:n]
    out = {}
    for name, (cfg, D, R, kind, prior) in cold.items():
        out[name] = {}
        for t in TIMES:
            tt = torch.full((n,), t)
            xt = D(x0, tt)
            k = max(1, round(steps * t))
            grid = torch.linspace(t, 0.0, k + 1)
            degrade, restore = D.sampling_pair(R)
            xs = {"degraded input": xt, "direct R": R(xt, tt),
                  "Algorithm 1": cold_sample(degrade, restore, xt, grid, "naive")[0],
                  "Algorithm 2": cold_sample(degrade, restore, xt, grid, "improved")[0]}
            row = {}
            for label, x in xs.items():
                rmse = ((x - x0) ** 2).reshape(n, -1).mean(1).sqrt()
                row[label] = float(rmse.mean())
                row[label + "_stderr"] = float(rmse.std() / math.sqrt(n))
            out[name][str(t)] = row
    return out


def _timing(sde, score_fn, blur, n, dims, a):
    """Seconds per sample, hot (DDIM, steps + denoising) vs cold (prior draw + Algorithm 2),
    alternating; ratio cold/hot per repeat, mean and SE."""
    import solvers
    cfg, D, R, kind, prior = blur
    seeds = list(range(n))
    hot, cold_, ratio = [], [], []
    for _ in range(a.timing_repeats):
        t0 = time.perf_counter()
        solvers.sample(sde, score_fn, (n, *dims), "ddim", steps=a.steps, seeds=seeds, denoise=True)
        t1 = time.perf_counter()
        cold_cell(D, R, prior, seeds, a.steps, "improved")()
        t2 = time.perf_counter()
        hot.append((t1 - t0) / n)
        cold_.append((t2 - t1) / n)
        ratio.append((t2 - t1) / (t1 - t0))
    out = {}
    for k, v in (("hot_seconds_per_sample", hot), ("cold_seconds_per_sample", cold_), ("ratio_cold_over_hot", ratio)):
        out[k], out[k + "_stderr"] = mean_se(v)
    out["note"] = f"batch {n}, {a.steps} steps each (hot: DDIM + Tweedie step; cold blur: prior draw + Algorithm 2)"
    return out


@torch.no_grad()
def _grids(ds, cold, sde, score_fn, dims, a, tag):
    """{tag}_grids.png: per degradation, for two test images, a row D(x0, t) (t = 0, TIMES) and a row
    of Algorithm 2's restoration from each; {tag}_samples.png: 16 samples per model and algorithm."""
    import solvers
    from runner.figures import save_image_grid
    from solvers import cold_sample
    from training.data import model_to_uint8
    rows = []
    times = (0.0,) + TIMES
    for name, (cfg, D, R, kind, prior) in cold.items():
        for i in (0, 1):
            x0 = ds.test[i:i + 1].expand(len(times), *dims)
            xt = D(x0, torch.tensor(times))
            rest = [x0[:1]]
            for t in TIMES:
                k = max(1, round(a.steps * t))
                degrade, restore = D.sampling_pair(R)
                rest.append(cold_sample(degrade, restore, D(x0[:1], torch.full((1,), t)),
                                        torch.linspace(t, 0.0, k + 1), "improved")[0])
            rows += [xt, torch.cat(rest)]
    save_image_grid(model_to_uint8(torch.cat(rows)), os.path.join(OUT, f"{tag}_grids.png"), cols=len(times))
    seeds = list(range(16))
    samples = [solvers.sample(sde, score_fn, (16, *dims), "ddim", steps=a.steps, seeds=seeds, denoise=True)[0]]
    for name, (cfg, D, R, kind, prior) in cold.items():
        for alg in ("improved", "naive"):
            samples.append(cold_cell(D, R, prior, seeds, a.steps, alg)()[0])
    save_image_grid(model_to_uint8(torch.cat(samples)), os.path.join(OUT, f"{tag}_samples.png"), cols=16)


def main(study_name, argv=None):
    study = STUDIES[study_name]
    p = argparse.ArgumentParser(description=f"hot against cold diffusion on {study_name} at equal training wall time")
    p.add_argument("--part", choices=("cost", "train", "eval", "all"), default="all")
    p.add_argument("--workdir", default=os.path.join(ROOT, "runs", study.tag))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--replan", action="store_true", help="measure the step costs again (else kept from the JSON)")
    p.add_argument("--cost-steps", type=int, default=10)
    p.add_argument("--cost-warmup", type=int, default=3)
    p.add_argument("--cost-repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=study.num_samples)
    p.add_argument("--timing-repeats", type=int, default=3)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    path = a.out or os.path.join(OUT, f"{study.tag}.json")
    if a.part in ("cost", "train", "all"):
        plan = plan_training(study, a, path)
        if a.part != "cost":
            train_all(study, a, plan)
    if a.part in ("eval", "all"):
        evaluate_all(study, a, path)
