"""`--mode compare`: a sampler study. Samplers x a shared NFE ladder x seeds on the trained model,
every metric of `evaluation.SampleEvaluator` with its standard error over seeds, reference rows
(train-vs-test floor, a Gaussian fitted to the train split, and the exact score for mixture
data), resumable cell by cell. Under torchrun the cells still to run are dealt over the ranks
in rounds (round k: rank r runs cell k * world_size + r); each round's rows (and the first
seed's sample grids) are all-gathered and rank 0 appends them to compare_cells.jsonl and
writes every file. A cell's samples come from per-sample seeds, so its row is the same
whichever rank runs it. Planning lives in `compare_plan`, tables and figures in
`compare_report`.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from typing import Optional

from .latent import is_latent, latent_run_data
from .common import data_shape, json_safe, restored_score_fn, setup
from configs.schema import parse_sampler_entry, resolve_samplers, validate_compare
from .compare_plan import budgets, cell_key, grid_file, grid_labels, label_of, settings, step_cost
import runner.compare_report as compare_report
from evaluation import FeatureSettings, SampleEvaluator, get_feature_extractor
from evaluation.inception import InceptionFeatures, check_inception_shape
from training.data import get_dataset, mixture_distribution
from training.distributed import all_gather_objects, barrier, broadcast_object
import solvers

ADAPTIVE_NFE_GUESS = 100      # for the time estimate only: adaptive runs report their real NFE


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(json_safe(obj), sort_keys=True).encode()).hexdigest()[:8]


def compare_paths(workdir: str, step: int, context: dict, study: Optional[dict] = None) -> dict:
    """Every file the study writes (the one place that says where results go): one directory per
    checkpoint, context and study, `workdir/compare/step<N>-<hash of context>-<hash of study>/`.
    The context (data, SDE, sample size, features, EMA, denoise, checkpoint) fixes what a cell's
    numbers mean; the study (the sampler entries, their options, budgets, tolerances, seeds, primary
    metric) fixes the report. Rerunning the same study resumes in its directory; a study with other
    settings gets its own, so no report of another study is ever rewritten. Finished cells of the
    other studies of the same context are reused (`sibling_cells`), so adding samplers, budgets or
    seeds only runs the new cells."""
    out = os.path.join(workdir, "compare", f"step{int(step):09d}-{_digest(context)}")
    if study is not None:
        out += f"-{_digest(study)}"
    return {"dir": out, "json": os.path.join(out, "compare.json"), "md": os.path.join(out, "compare.md"),
            "png": os.path.join(out, "compare.png"), "cells": os.path.join(out, "compare_cells.jsonl"),
            "grids": os.path.join(out, "compare_grids")}


def sibling_cells(paths: dict) -> dict:
    """Finished cells of every study directory of the same checkpoint and context (`<dir prefix>*`)."""
    prefix = paths["dir"].rsplit("-", 1)[0] if os.path.basename(paths["dir"]).count("-") == 2 else paths["dir"]
    done = {}
    for d in sorted(glob.glob(glob.escape(prefix) + "*")):
        if d != paths["dir"]:
            done.update(load_cells(os.path.join(d, "compare_cells.jsonl")))
    return done


def load_cells(path: str) -> dict:
    """Finished cells by key from the append-only log (a torn last line from a crash is ignored)."""
    done = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                done[row["key"]] = row
    return done


def _append(path: str, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(json_safe(row)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def gaussian_sampler(train):
    """draw(n, generator) from N(mean, cov) fitted to the flattened train split (full covariance)."""
    import torch
    flat = train.reshape(train.shape[0], -1).double()
    mu, cov = flat.mean(0), torch.cov(flat.T).reshape(flat.shape[1], -1)
    lam, u = torch.linalg.eigh(cov)
    root = u * lam.clamp(min=0).sqrt()

    def draw(n, generator):
        z = torch.randn(n, flat.shape[1], generator=generator, dtype=torch.float64)
        return (mu + z @ root.T).float().reshape(n, *train.shape[1:])
    return draw


def plan_cells(config, sde, names, s, dims, has_exact):
    """All cells in run order (references first) with their planned NFE."""
    cells = []
    for ref in ("floor", "gaussian"):
        for seed in s["seeds"]:
            cells.append({"score": "reference", "sampler": ref, "options": {}, "budget": {}, "label": ref,
                          "seed": seed, "planned_nfe": 0})
    for score in ("model", "exact") if has_exact else ("model",):
        for entry in names:
            name, variant = parse_sampler_entry(entry)
            base = {**dict(config.sampling.options.get(name, {}) or {}), **variant}
            overhead, per_step = step_cost(sde, name, {k: v for k, v in base.items() if k != "steps"}, dims,
                                           config.sampling.denoise)
            for budget, options in budgets(base, s, (overhead, per_step)):
                planned = ADAPTIVE_NFE_GUESS if per_step == 0 else overhead + per_step * options["steps"]
                for seed in s["seeds"]:
                    cells.append({"score": score, "sampler": entry, "name": name, "options": options,
                                  "budget": budget, "label": label_of(budget), "seed": seed,
                                  "planned_nfe": planned})
    return cells


def run_compare(config, workdir, checkpoint=None):
    """Run (or resume) the study in `workdir` and write compare.json, compare.md, compare.png and grids."""
    import torch

    c = config.compare
    validate_compare(config)
    s = settings(c)
    names = resolve_samplers(c.samplers)
    device, here = setup(config)
    sde, model, model_score_fn, step, ckpt = restored_score_fn(config, workdir, c.use_ema, checkpoint, device)
    ds = latent_run_data(config, workdir, device) if is_latent(config) else get_dataset(config)
    codec = getattr(ds, "codec", None)     # latent runs: samples decoded, judged against the pixel test split
    if codec is not None:
        ds = ds.pixels
    dims = data_shape(model)
    n = min(s["num_samples"], ds.test.shape[0], ds.train.shape[0])
    distribution = None
    if ds.name == "mixture":
        m = config.data.mixture
        distribution = mixture_distribution(m.weights, m.means, m.stds)
    inception = None
    if c.inception:
        check_inception_shape(ds.shape)
        inception = InceptionFeatures()
    labels = ds.labels if ds.is_image else None
    extractor = None
    for turn in ("main", "others"):      # rank 0 trains and caches the feature classifier, the others load it
        if (turn == "main") == here.is_main:
            extractor = get_feature_extractor(ds, labels, c.feature_cache, FeatureSettings(epochs=c.feature_epochs),
                                              log=print)
        barrier()
    evaluator = SampleEvaluator(ds.test[:n], extractor, ds.num_levels, distribution, inception, seed=c.seed)
    primary = c.primary_metric or ("fd" if ds.is_image else "sliced_w1")
    score_fns = {"model": model_score_fn}
    if distribution is not None:
        score_fns["exact"] = distribution.score_fn(sde)
    context = {"data": config.data.to_dict(), "sde": config.sde.to_dict(), "n": n, "step": step,
               "checkpoint": os.path.basename(str(ckpt)), "use_ema": c.use_ema, "denoise": config.sampling.denoise,
               "features": extractor.info.get("key", extractor.kind), "metric_seed": c.seed,
               "inception": bool(c.inception), **({"latent_scale": codec.scale} if codec is not None else {})}
    study = {"samplers": list(names), "settings": s, "primary_metric": c.primary_metric,
             "options": config.sampling.options.to_dict()}
    paths = compare_paths(workdir, step, context, study)

    cells = plan_cells(config, sde, names, s, dims, distribution is not None)
    for cell in cells:
        cell["key"] = cell_key(cell, context)
    done = None
    if here.is_main:
        done = load_cells(paths["cells"])
        os.makedirs(paths["dir"], exist_ok=True)
        reused = {k: row for k, row in sibling_cells(paths).items() if k not in done and
                  any(cell["key"] == k for cell in cells)}
        for row in reused.values():              # this study's log holds every one of its cells
            _append(paths["cells"], row)
        done.update(reused)
        if reused:
            print(f"compare: {len(reused)} finished cells reused from other studies of this checkpoint")
        if os.path.exists(paths["json"]):
            print(f"compare: resuming the study in {paths['dir']}")
    done = broadcast_object(done)
    todo = [cell for cell in cells if cell["key"] not in done]
    grid_pick = {}
    for cell in cells:
        grid_pick.setdefault((cell["score"], cell["sampler"]), []).append(cell)
    grid_pick = {k: set(grid_labels(v)) for k, v in grid_pick.items()}
    if here.is_main:
        os.makedirs(paths["grids"], exist_ok=True)

    planned = sum(cell["planned_nfe"] for cell in todo)
    with torch.no_grad():
        x = torch.randn(n, *dims, generator=torch.Generator().manual_seed(0)).to(device)
        t0 = time.perf_counter()
        model_score_fn(x, torch.full((n,), 0.5, device=device))
        per_nfe = time.perf_counter() - t0
    say = print if here.is_main else (lambda *a, **k: None)
    say(f"compare: {len(cells)} cells ({len(cells) - len(todo)} done, {len(todo)} to run) = "
        f"{len(names)} samplers x budgets x {len(s['seeds'])} seeds + references, {n} samples each; "
        f"~{planned} batched score evaluations at ~{per_nfe * 1e3:.0f} ms: about {planned * per_nfe / 60:.1f} min")

    gaussian = gaussian_sampler(ds.train)

    def draw(cell, count):
        """The first `count` samples of a cell (all n when count = n): reference draws, or the
        sampler with per-sample seeds shared across samplers (sample i is the same in any batch)."""
        gen = torch.Generator().manual_seed(1_000_003 * (cell["seed"] + 1))
        if cell["sampler"] == "floor":
            return ds.train[torch.randperm(ds.train.shape[0], generator=gen)[:n]][:count], None
        if cell["sampler"] == "gaussian":
            return gaussian(n, gen)[:count], None
        seeds = [1_000_003 * (cell["seed"] + 1) + i for i in range(count)]
        dev = device if cell["score"] == "model" else torch.device("cpu")     # the oracle lives on the CPU
        x, info = solvers.sample(sde, score_fns[cell["score"]], (count, *dims), sampler=cell["name"],
                                 seeds=seeds, denoise=config.sampling.denoise, device=dev, **cell["options"])
        if codec is not None:              # the one path back to pixels: D(u / s), quantised
            x = codec.decode(x)
        return x.cpu(), info

    from tqdm.auto import tqdm
    bar = tqdm(total=planned, unit="nfe", disable=not (c.progress and here.is_main), desc="compare")
    W = here.world_size
    for k in range(0, len(todo), W):          # round k/W: rank r runs cell k + r
        mine = todo[k + here.rank] if k + here.rank < len(todo) else None
        out = None
        if mine is not None:
            t_start = time.perf_counter()
            x, info = draw(mine, n)
            seconds = time.perf_counter() - t_start if info is None else info.seconds
            row = {key: mine[key] for key in ("key", "score", "sampler", "label", "seed", "options")}
            row.update(mine["budget"])
            row.update({"nfe": 0 if info is None else int(info.nfe), "seconds": round(seconds, 4), "n": n})
            row.update(evaluator.evaluate(x))
            grid = None           # this cell's grid goes to rank 0, which saves it
            if mine["seed"] == s["seeds"][0]:
                grid = x[:64] if ds.is_image else x[:2000, :2]
            out = (json_safe(row), grid)
        for cell, got in zip(todo[k:k + W], all_gather_objects(out)):
            row, grid = got
            if here.is_main:
                if grid is not None:
                    compare_report.save_cell_grid(grid, ds, os.path.join(paths["grids"], grid_file(row)))
                _append(paths["cells"], row)
            done[row["key"]] = row
            bar.update(cell["planned_nfe"])
            value = row.get(primary, float("nan"))
            if here.is_main:
                bar.write(f"{cell['score']:9s} {cell['sampler']:18s} {cell['label']:11s} seed {cell['seed']} "
                          f"nfe={row['nfe']:5d} {primary}={value:.4f} ({row['seconds']:.1f}s)")
    bar.close()
    if not here.is_main:
        return None

    rows = [done[cell["key"]] for cell in cells]
    for row in rows:
        row["grid"] = row["label"] in grid_pick[(row["score"], row["sampler"])] and row["seed"] == s["seeds"][0]
        path = os.path.join(paths["grids"], grid_file(row))
        if row["grid"] and not os.path.exists(path):     # a resumed cell from before grids were kept
            cell = next(c for c in cells if c["key"] == row["key"])
            compare_report.save_cell_grid(draw(cell, min(64, n))[0], ds, path)
    meta = {"dataset": ds.name, "num_samples": n, "reference": f"test split, first {n}", "primary_metric": primary,
            "samplers": list(names), "settings": s, "seeds": list(s["seeds"]), "checkpoint": ckpt, "step": step,
            "use_ema": c.use_ema, "denoise": config.sampling.denoise, "features": extractor.info,
            "reference_label_hist": evaluator.ref_hist, "quick": bool(c.quick)}
    report = compare_report.write_all(rows, meta, paths)
    print(f"compared {len(rows)} cells; primary metric {primary}: {paths['json']}, {paths['md']}, "
          f"{paths['png']}, {paths['grids']}/")
    return report
