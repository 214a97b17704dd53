"""The evaluation parts of `bench/latent_vs_pixel.py`: samples at equal NFE judged in the data's feature
space, test bits/dim (pixel ODE NLL, latent bound), sampling speed measured side by side, sample grids."""
from __future__ import annotations

import glob
import json
import os
import statistics
import time

from bench.latent_study import ARM_NAMES, common, mean_se, run_ok, ae_quality

KEYS = ("fd", "kid", "precision", "recall")


def _arm_sampler(a, res, arm):
    """(run, codec or None) of a trained arm."""
    from runner import load_run
    from runner.latent import latent_run_data
    wd = res["train"][arm]["workdir"]
    r = load_run(wd)
    return r, (None if arm == "pixel" else latent_run_data(r.config, wd).codec)


def draw(a, r, codec, seeds):
    """Samples (decoded for latent arms) of one sampler at a.sampler_steps, one seed per sample."""
    import solvers
    x, info = solvers.sample(r.sde, r.score_fn, (len(seeds), *r.shape), sampler=a.sampler, steps=a.sampler_steps,
                             seeds=seeds, denoise=True)
    return (x if codec is None else codec.decode(x)), info


def save_grid(a, x, name):
    from runner.figures import save_image_grid
    from training.data import model_to_uint8
    path = os.path.join(os.path.dirname(a.out), f"{a.study.out}_grid_{name}.png")
    save_image_grid(model_to_uint8(x[:64]), path, cols=8)
    return os.path.relpath(path, os.path.dirname(a.out))


def part_eval(a, res):
    import torch
    from evaluation import FeatureSettings, SampleEvaluator, get_feature_extractor
    from runner.compare import gaussian_sampler
    from training.data import get_dataset
    from run import load_config
    ds = get_dataset(load_config(a.study.pixel_config))
    extractor = get_feature_extractor(ds, ds.labels, "", FeatureSettings(epochs=a.study.feature_epochs), log=print)
    n = a.study.num_samples or ds.test.shape[0]
    ev = SampleEvaluator(ds.test[:n], extractor, ds.num_levels, seed=3)
    out = res.setdefault("eval", {"sampler": a.sampler, "steps": a.sampler_steps, "num_samples": n,
                                  "reference": f"the first {n} test images", "seeds": a.seeds,
                                  "features": extractor.info.get("key", extractor.kind)})

    def summarise(rows):
        return {k: mean_se([r[k] for r in rows]) for k in KEYS}

    if "floor" not in out:
        gauss = gaussian_sampler(ds.train)
        rows_f, rows_g = [], []
        for s in range(a.seeds):
            gen = torch.Generator().manual_seed(1_000_003 * (s + 1))
            rows_f.append(ev.evaluate(ds.train[torch.randperm(ds.train.shape[0], generator=gen)[:n]]))
            rows_g.append(ev.evaluate(gauss(n, gen)))
        out["floor"], out["gaussian"] = summarise(rows_f), summarise(rows_g)
        out.setdefault("grids", {})["test"] = save_grid(a, ds.test[:64], "test")
        a.save(res)
    for arm in ARM_NAMES:
        plan = res["train"].get(arm, {})
        if arm in out or "workdir" not in plan:
            continue
        r, codec = _arm_sampler(a, res, arm)
        rows, secs, nfe = [], [], 0
        for s in range(a.seeds):
            t0 = time.time()
            x, info = draw(a, r, codec, [1_000_003 * (s + 1) + i for i in range(n)])
            secs.append(time.time() - t0)
            nfe = info.nfe
            rows.append(ev.evaluate(x))
            if s == 0:
                out.setdefault("grids", {})[arm] = save_grid(a, x, arm)
        out[arm] = {**summarise(rows), "nfe": nfe, "samples_per_second": mean_se([n / t for t in secs])}
        out[arm]["bits_per_dim"] = bits_per_dim(a, plan["workdir"])
        if codec is not None:
            out[arm]["autoencoder"] = ae_quality(a, r.config.data.autoencoder, ev)
        a.save(res)
        print(arm, json.dumps(out[arm]))


def part_speed(a, res):
    """Seconds per sample of each arm (sampling + decoding, a.speed_batch samples, the eval's sampler and
    steps), measured in a.rounds alternating rounds (round r starts at arm r mod 3); the ratios to the pixel
    arm are paired by round (mean and SE over rounds)."""
    if "speed" in res:
        return
    arms = [arm for arm in ARM_NAMES if "workdir" in res["train"].get(arm, {})]
    samplers = {arm: _arm_sampler(a, res, arm) for arm in arms}
    per = {arm: [] for arm in arms}
    for arm in arms:                                         # warm-up (allocator, first-call costs), untimed
        draw(a, *samplers[arm], list(range(8)))
    for r in range(a.rounds):
        for j in range(len(arms)):
            arm = arms[(r + j) % len(arms)]
            t0 = time.perf_counter()
            draw(a, *samplers[arm], [7_000_001 * (r + 1) + i for i in range(a.speed_batch)])
            per[arm].append((time.perf_counter() - t0) / a.speed_batch)
    res["speed"] = {"seconds_per_sample": {arm: statistics.median(v) for arm, v in per.items()}, "runs": per,
                    "speedup_over_pixel": {arm: mean_se([p / v for v, p in zip(per[arm], per["pixel"])]) for arm in arms},
                    "batch": a.speed_batch, "rounds": a.rounds, "sampler": a.sampler, "steps": a.sampler_steps,
                    "how": "alternating rounds, decoding included, 1 thread; speed-up = pixel s/sample / arm s/sample "
                           "paired by round"}
    a.save(res)
    print(json.dumps(res["speed"]["speedup_over_pixel"]))


def bits_per_dim(a, wd):
    """--mode eval on the first --eval-n test images (pixel: ODE NLL, latent: the bound, 1 posterior draw)."""
    args = ["--workdir", wd, "--mode", "eval", f"--config.eval.num_samples={a.eval_n}", "--config.eval.repeats=1",
            "--config.eval.estimator=ode"] + common(a.threads)
    run_ok(args)
    path = sorted(glob.glob(os.path.join(wd, "eval", "*", "eval.json")), key=os.path.getmtime)[-1]
    rep = json.load(open(path))
    keep = ("bits_per_dim", "stderr", "terms", "posterior_samples", "baselines", "baselines_stderr", "num_examples",
            "scale", "estimator", "quantity", "nfe", "seconds")
    return {k: rep[k] for k in keep if k in rep}


def part_grids(a, res):
    """<out>_grids.png: rows test images, pixel, latent f=2, latent f=4 samples (16 each, the eval part's sampler
    and steps, seeds of its first sample set)."""
    import torch
    from runner.figures import save_image_grid
    from training.data import get_dataset, model_to_uint8
    from run import load_config
    rows = [get_dataset(load_config(a.study.pixel_config)).test[:16]]
    for arm in ARM_NAMES:
        r, codec = _arm_sampler(a, res, arm)
        rows.append(draw(a, r, codec, [1_000_003 + i for i in range(16)])[0])
    path = os.path.splitext(a.out)[0] + "_grids.png"
    save_image_grid(model_to_uint8(torch.cat(rows)), path, cols=16)
    print(path)
