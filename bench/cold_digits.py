"""Benchmark: hot against cold diffusion on 8x8 digits (Bansal et al. 2022).

Same data, same U-Net (the demo's DDPM++, label t), same optimiser, batch and number of steps
(hence about the same training wall time, measured): the project's VP score model ("hot") and
one restoration network per degradation (blur, centre mask, pixelate, snow; L1 loss).

Measured, each with its standard error:
1. generation: FD / KID / precision / recall / density / coverage in the project's own feature
   space (`evaluation`, the digits classifier), over seeds, beside the study's reference rows
   (floor: train vs test; a Gaussian fitted to train; the cold priors' 10-component mixture fitted
   by EM to the clean train split, i.e. what the prior alone generates). Hot: DDIM (eta = 0) with `--steps`
   steps + Tweedie denoising. Cold: Algorithms 2 and 1 with `--steps` steps from x_T drawn
   from `cold.prior` (blur, pixelate, snow: a 10-component Gaussian mixture fitted to D(train, T)
   plus noise 0.002; mask: the fixed fully masked image plus noise 0.002);
2. diversity: distinct samples (quantised to the data's 17 levels) out of n, and the blur prior's
   noise-scale ablation (0, 0.002, 0.02, 0.1);
3. restoration: RMSE to x0 of test images restored from D(x0, t) at t in (0.1, 0.25, 0.5, 0.75,
   1): one direct R call, Algorithm 1 and Algorithm 2 (steps in proportion to t), and the
   degraded input itself as the reference row; SE over test images;
4. wall time per sample, hot (DDIM) against cold (Algorithm 2) at equal steps, timed side by side
   in alternation; the ratio with its SE over repeats.

Usage (resumable: trained models are reused, finished parts are kept in the JSON):

    python bench/cold_digits.py --part train      # 5 models, 400 steps each (batch 64), 1 thread
    python bench/cold_digits.py --part eval       # -> bench/results/cold_digits.json, .md, *_grids.png
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OUT = os.path.join(ROOT, "bench", "results")
COLD = ("blur", "mask", "pixelate", "snow")
TIMES = (0.1, 0.25, 0.5, 0.75, 1.0)
NOISES = (0.0, 0.002, 0.02, 0.1)


def model_args(name, workdir, n_iters, threads):
    """run.py arguments of one model: the demo config (digits, DDPM++ U-Net), hot or cold."""
    wd = os.path.join(workdir, name)
    args = ["--workdir", wd, f"--config.training.n_iters={n_iters}", f"--config.training.num_threads={threads}",
            "--config.training.progress=False", "--config.training.snapshot_freq=100"]
    if name != "hot":
        args.append(f"--config.cold.degradation={name}")
    return wd, args


def train_all(a):
    import run
    for name in ("hot",) + COLD:
        wd, args = model_args(name, a.workdir, a.n_iters, a.threads)
        t0 = time.time()
        code = run.main(args + ["--mode", "train"])
        if code:
            raise SystemExit(f"training {name} failed with status {code}")
        print(f"{name}: trained in {time.time() - t0:.0f}s (this call)", flush=True)


def wall_time(wd):
    """Training wall time from metrics.jsonl (sum of the 'time' stamps of each train call)."""
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl")) if line.strip()]
    total, last = 0.0, 0.0
    for r in rows:
        if "time" not in r:
            continue
        if r["time"] < last:          # a resumed call restarts its clock
            total += last
        last = r["time"]
    return total + last


def mean_se(values):
    v = [float(x) for x in values]
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))


def _load(path):
    return json.load(open(path)) if os.path.exists(path) else {}


def _save(path, res):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, path)


def _runs(a):
    """{name: (config, model, step)} of the five trained runs (EMA weights)."""
    from runner.rundir import load_saved_config
    from training import restore_model
    runs = {}
    for name in ("hot",) + COLD:
        wd = os.path.join(a.workdir, name)
        config = load_saved_config(wd)
        if config is None:
            raise SystemExit(f"no trained run in {wd}: run --part train first")
        model, step, _ = restore_model(config, wd, use_ema=True)
        runs[name] = (config, model, step, wall_time(wd))
    return runs


def evaluate_all(a):
    import torch
    import sde_lib
    import solvers
    from evaluation import FeatureSettings, SampleEvaluator, dataset_labels, get_feature_extractor, quantise
    from models import get_restore_fn, get_score_fn
    from runner.cold import fit_prior
    from solvers import DegradedPrior
    from runner.compare import gaussian_sampler
    from training.data import get_dataset

    tag = "cold_digits"
    path = a.out or os.path.join(OUT, f"{tag}.json")
    res = _load(path)
    runs = _runs(a)
    config = runs["hot"][0]
    ds = get_dataset(config)
    n = min(a.num_samples, ds.test.shape[0], ds.train.shape[0])
    dims = tuple(ds.train.shape[1:])
    extractor = get_feature_extractor(ds, dataset_labels(config, ds), "", FeatureSettings(epochs=30))
    evaluator = SampleEvaluator(ds.test[:n], extractor, ds.num_levels, seed=3)
    sde = sde_lib.get_sde(config)
    score_fn = get_score_fn(sde, runs["hot"][1])
    cold = {}
    for name in COLD:
        cfg, model, _, _ = runs[name]
        D = sde_lib.get_degradation(cfg)
        kind, prior = fit_prior(cfg, D, ds.train)
        cold[name] = (cfg, D, get_restore_fn(model), kind, prior)
    res["meta"] = {"dataset": ds.name, "n": n, "steps": a.steps, "seeds": a.seeds, "reference": f"test split, first {n}",
                   "features": extractor.info, "threads": a.threads,
                   "training": {k: {"step": v[2], "wall_seconds": round(v[3], 1)} for k, v in runs.items()},
                   "degradations": {k: repr(v[1]) for k, v in cold.items()},
                   "priors": {k: v[3] for k, v in cold.items()}}
    gen_rows = res.setdefault("generation_cells", {})
    gaussian = gaussian_sampler(ds.train)
    # the cold priors' own generator on clean data: how far a 10-component mixture gets without any network
    mixture = DegradedPrior.fit(ds.train.double(), cold["blur"][4].means.shape[0], 0.0, seed=config.seed)

    def levels(x):
        q = quantise(x.float(), ds.num_levels or 256)
        return torch.unique(q.reshape(q.shape[0], -1), dim=0).shape[0]

    for seed in a.seeds:
        seeds = [1_000_003 * (seed + 1) + i for i in range(n)]
        gen = torch.Generator().manual_seed(1_000_003 * (seed + 1))
        cells = [("floor", lambda: (ds.train[torch.randperm(ds.train.shape[0], generator=gen)[:n]], 0)),
                 ("gaussian", lambda: (gaussian(n, gen), 0)),
                 ("mixture (prior's EM) on train", lambda: (mixture.sample(seeds), 0)),
                 (f"hot ddim", lambda: _nfe(solvers.sample(sde, score_fn, (n, *dims), "ddim", steps=a.steps,
                                                          seeds=seeds, denoise=True, eta=0.0)))]
        for name in COLD:
            cfg, D, R, kind, prior = cold[name]
            for alg in ("improved", "naive"):
                cells.append((f"{name} {alg}", _cold_cell(D, R, prior, seeds, a.steps, alg)))
        cfg, D, R, kind, prior = cold["blur"]
        for noise in NOISES:
            if noise != prior.noise:
                p2 = type(prior)(prior.weights, prior.means, prior.chols, prior.shape, noise)
                cells.append((f"blur improved, prior noise {noise:g}", _cold_cell(D, R, p2, seeds, a.steps, "improved")))
        for label, fn in cells:
            key = f"{label} | seed {seed} | n {n} | steps {a.steps}"
            if key in gen_rows:
                continue
            t0 = time.perf_counter()
            x, nfe = fn()
            row = {"label": label, "seed": seed, "nfe": nfe, "seconds": round(time.perf_counter() - t0, 3),
                   "distinct": levels(x), **evaluator.evaluate(x.float())}
            row.pop("label_hist", None)
            gen_rows[key] = row
            print(f"{key}: fd={row['fd']:.3f} distinct={row['distinct']} ({row['seconds']:.1f}s)", flush=True)
            _save(path, res)
    res["generation"] = _aggregate(r for k, r in gen_rows.items() if k.endswith(f"| n {n} | steps {a.steps}"))
    if "restoration" not in res:
        res["restoration"] = _restoration(ds, cold, n, a.steps)
        _save(path, res)
    if "timing" not in res:
        res["timing"] = _timing(sde, score_fn, cold["blur"], n, dims, a)
        _save(path, res)
    _grids(ds, cold, runs, sde, score_fn, dims, a, tag)
    _save(path, res)
    open(path.replace(".json", ".md"), "w").write(markdown(res))
    print(f"wrote {path} and {path.replace('.json', '.md')}")


def _nfe(out):
    x, info = out
    return x, info.nfe


def _cold_cell(D, R, prior, seeds, steps, alg):
    import torch
    from solvers import cold_sample, cold_time_grid

    def run():
        xT = prior.sample(seeds)
        degrade, restore = D.sampling_pair(R)
        x, info = cold_sample(degrade, restore, xT, cold_time_grid(steps, D.T, dtype=torch.float32), alg)
        return x, info.nfe
    return run


METRICS = ("fd", "kid", "precision", "recall", "density", "coverage", "distinct", "seconds")


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


@__import__("torch").no_grad()
def _restoration(ds, cold, n, steps):
    """RMSE to x0 per degradation and t: degraded input, direct R, Algorithms 1 and 2 (SE over images)."""
    import torch
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
        _cold_cell(D, R, prior, seeds, a.steps, "improved")()
        t2 = time.perf_counter()
        hot.append((t1 - t0) / n)
        cold_.append((t2 - t1) / n)
        ratio.append((t2 - t1) / (t1 - t0))
    out = {}
    for k, v in (("hot_seconds_per_sample", hot), ("cold_seconds_per_sample", cold_), ("ratio_cold_over_hot", ratio)):
        out[k], out[k + "_stderr"] = mean_se(v)
    out["note"] = f"batch {n}, {a.steps} steps each (hot: DDIM + Tweedie step; cold blur: prior draw + Algorithm 2)"
    return out


@__import__("torch").no_grad()
def _grids(ds, cold, runs, sde, score_fn, dims, a, tag):
    """{tag}_grids.png: per degradation, for two test digits, a row D(x0, t) (t = 0, TIMES) and a row
    of Algorithm 2's restoration from each; {tag}_samples.png: 16 samples per model, a row each."""
    import torch
    import solvers
    from runner.figures import save_image_grid
    from training.data import model_to_uint8
    from solvers import cold_sample
    rows = []
    times = (0.0,) + TIMES
    for name, (cfg, D, R, kind, prior) in cold.items():
        for i in (0, 1):
            x0 = ds.test[i:i + 1].expand(len(times), *dims)
            tt = torch.tensor(times)
            xt = D(x0, tt)
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
            samples.append(_cold_cell(D, R, prior, seeds, a.steps, alg)()[0])
    save_image_grid(model_to_uint8(torch.cat(samples)), os.path.join(OUT, f"{tag}_samples.png"), cols=16)


def _f(m, se, d=3):
    return f"{m:.{d}f} ± {se:.{d}f}" if math.isfinite(se) else f"{m:.{d}f}"


def markdown(res):
    meta, g = res["meta"], res["generation"]
    lines = [f"Data: {meta['dataset']}, {meta['n']} samples per set against the {meta['reference']}; "
             f"{len(meta['seeds'])} seeds (mean ± SE over seeds); {meta['steps']} steps.", "",
             "| row | NFE | FD | KID | precision | recall | distinct / n |", "|---|---|---|---|---|---|---|"]
    for label, r in g.items():
        lines.append(f"| {label} | {r['nfe']} | {_f(r['fd'], r['fd_stderr'], 2)} | {_f(r['kid'], r['kid_stderr'], 4)} "
                     f"| {_f(r['precision'], r['precision_stderr'], 2)} | {_f(r['recall'], r['recall_stderr'], 2)} "
                     f"| {_f(r['distinct'], r['distinct_stderr'], 1)} |")
    lines += ["", "Restoration RMSE to x0 (model space [-1, 1]; mean ± SE over test images):", "",
              "| degradation | t | degraded input | direct R | Algorithm 1 | Algorithm 2 |", "|---|---|---|---|---|---|"]
    for name, per_t in res["restoration"].items():
        for t, r in per_t.items():
            cells = " | ".join(_f(r[k], r[k + "_stderr"]) for k in ("degraded input", "direct R", "Algorithm 1",
                                                                      "Algorithm 2"))
            lines.append(f"| {name} | {t} | {cells} |")
    tm = res["timing"]
    lines += ["", f"Wall time per sample: hot {tm['hot_seconds_per_sample'] * 1e3:.2f} ± "
              f"{tm['hot_seconds_per_sample_stderr'] * 1e3:.2f} ms, cold {tm['cold_seconds_per_sample'] * 1e3:.2f} ± "
              f"{tm['cold_seconds_per_sample_stderr'] * 1e3:.2f} ms; ratio cold/hot "
              f"{_f(tm['ratio_cold_over_hot'], tm['ratio_cold_over_hot_stderr'])} ({tm['note']}).", "",
              "Training: " + ", ".join(f"{k} {v['step']} steps in {v['wall_seconds']:.0f} s"
                                       for k, v in meta["training"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("train", "eval", "all"), default="all")
    p.add_argument("--workdir", default=os.path.join(ROOT, "runs", "cold_digits"))
    p.add_argument("--n-iters", type=int, default=400)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=359)
    p.add_argument("--timing-repeats", type=int, default=5)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    if a.part in ("train", "all"):
        train_all(a)
    if a.part in ("eval", "all"):
        evaluate_all(a)


if __name__ == "__main__":
    main()
