"""The settings and training parts of `bench/latent_vs_pixel.py` (latent against pixel score models at
equal training compute): one `Study` per data set, the run.py arguments of each model, the autoencoders'
quality, the side-by-side step costs and the equal-compute training plan."""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RESULTS = os.path.join(ROOT, "bench", "results")
ARM_NAMES = ("pixel", "latent_f2", "latent_f4")


@dataclass(frozen=True)
class Study:
    data: str                   # the data set's name (and the --data value)
    out: str                    # bench/results/<out>.json (+ .md, .png, grids)
    ae_config: str              # configs/<...>.py of the autoencoders
    latent_config: str
    pixel_config: str
    #: latent arms: name -> (autoencoder f, latent channels, latent image size, U-Net ch_mult, attention)
    arms: dict
    #: run.py overrides (field=value) of every score model (pixel and latent) and of the autoencoders
    score_overrides: tuple = ()
    ae_overrides: tuple = ()
    feature_epochs: int = 30    # evaluation.FeatureSettings(epochs=...) of the data's feature classifier
    num_samples: int = 0        # per sample set, against the first num_samples test images (0: the whole test split)
    log_freq: int = 10          # metrics rows of the training runs (the cost runs time the loop between them)
    note: str = ""
    defaults: dict = field(default_factory=dict)   # CLI defaults of this study


def _config(name):
    return os.path.join(ROOT, "configs", name)


STUDIES = {
    "digits": Study(
        "digits", "latent_vs_pixel", _config("digits_autoencoder.py"), _config("digits_latent_vp.py"),
        _config("digits_vp_ddpmpp.py"), {"latent_f2": (2, 2, 4, "(1, 2)", "(2,)"), "latent_f4": (4, 4, 2, "(1,)", "(2,)")},
        note="digits (8x8, 17 levels); the Fashion-MNIST study is --data fashion_mnist",
        defaults=dict(beta=1e-3, ae_steps=1500, budget=240.0, cost_steps=60, eval_n=100, speed_batch=64)),
    # 28x28 on one shared thread: the demo's small DDPM++ (nf 32, one res block per level, batch 64) on
    # three levels 28, 14, 7 (attention at 7) for pixels; the latent U-Nets of the same family on 2x14x14
    # (levels 14, 7) and 4x7x7 (one level); latents of D/2 and D/4 numbers like the digits study's.
    "fashion_mnist": Study(
        "fashion_mnist", "latent_vs_pixel_fashion_mnist", _config("fashion_mnist_autoencoder.py"),
        _config("fashion_mnist_latent_vp.py"), _config("fashion_mnist_vp_ddpmpp.py"),
        {"latent_f2": (2, 2, 14, "(1, 2)", "(7,)"), "latent_f4": (4, 4, 7, "(1,)", "(7,)")},
        score_overrides=("model.nf=32", "model.num_res_blocks=1", "model.dropout=0.0", "training.batch_size=64",
                         "training.lr=2e-3", "training.warmup=100", "training.eval_freq=0"),
        ae_overrides=("training.batch_size=64", "training.eval_freq=0"),
        feature_epochs=8, num_samples=300, log_freq=5,
        note="Fashion-MNIST (28x28, 256 levels), a 10-minute budget per arm on one shared thread: every model "
             "is far from converged",
        defaults=dict(beta=0.1, ae_steps=300, budget=600.0, cost_steps=20, eval_n=100, speed_batch=300)),
}


def common(threads):
    return [f"--config.training.num_threads={threads}", "--config.training.progress=False"]


def _over(fields):
    return [f"--config.{f}" for f in fields]


def ae_args(a, wd, f, c, beta, steps, log_freq=None):
    S = a.study
    return ["--config", S.ae_config, "--workdir", wd, "--mode", "train_autoencoder", f"--config.autoencoder.f={f}",
            f"--config.autoencoder.latent_channels={c}", f"--config.autoencoder.beta={beta}",
            f"--config.training.n_iters={steps}", "--config.training.snapshot_freq=100000",
            f"--config.training.log_freq={log_freq or S.log_freq}"] + _over(S.ae_overrides) + common(a.threads)


def score_args(a, arm, wd, steps, ae_dir=None):
    S = a.study
    base = ["--workdir", wd, "--mode", "train", f"--config.training.n_iters={steps}",
            "--config.training.snapshot_freq=100000", f"--config.training.log_freq={S.log_freq}"] \
        + _over(S.score_overrides) + common(a.threads)
    if arm == "pixel":
        return ["--config", S.pixel_config] + base
    f, c, size, mult, attn = S.arms[arm]
    return ["--config", S.latent_config] + base + [f"--config.data.autoencoder={ae_dir}", f"--config.data.image_size={size}",
                                                   f"--config.data.num_channels={c}", f"--config.model.ch_mult={mult}",
                                                   f"--config.model.attn_resolutions={attn}"]


def ae_dir(a, f):
    return os.path.join(a.workdir, f"ae_f{f}_beta{a.beta:g}")


def run_ok(args):
    import run
    code = run.main(args)
    if code != 0:
        raise SystemExit(f"run.py {' '.join(args)} exited with {code}")


def step_cost(wd):
    """Seconds per step from metrics.jsonl's loop times (the first logged row is the start: setup excluded)."""
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl")) if '"lr"' in line]
    return (rows[-1]["time"] - rows[0]["time"]) / (rows[-1]["step"] - rows[0]["step"])


def mean_se(v):
    import torch
    v = torch.as_tensor(v, dtype=torch.float64).flatten()
    return {"mean": v.mean().item(), "stderr": (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else None}


def reconstruction_fd(codec, test, evaluator, n, subsets):
    """FD of decoded reconstructions against the evaluator's reference (the first n test images). With
    `subsets` disjoint sets of n further test images: mean and SE over them, beside the same subsets' own FD
    (real test images against the reference: what a perfect autoencoder would score). Otherwise one
    number: the reference's own reconstructions (paired images, hence far below the floor)."""
    if subsets and test.shape[0] >= (subsets + 1) * n:
        rec, real = [], []
        for s in range(subsets):
            x = test[n * (s + 1):n * (s + 2)]
            rec.append(evaluator.evaluate(codec.decode(codec.encode(x)))["fd"])
            real.append(evaluator.evaluate(x)["fd"])
        return {"reconstruction_fd": mean_se(rec), "test_subset_fd": mean_se(real),
                "reconstruction_fd_how": f"{subsets} disjoint sets of {n} test images after the reference's {n}"}
    return {"reconstruction_fd": evaluator.evaluate(codec.decode(codec.encode(test)))["fd"]}


def ae_quality(a, ae_run, evaluator=None):
    """Test reconstruction and KL (bits/dim of x), PSNR of quantised decoded means, latent std, rFD."""
    import torch
    from models.autoencoder import gaussian_kl
    from training.latent import LatentCodec, encode_dataset, load_autoencoder
    from training.data import get_dataset
    from run import load_config
    ds = get_dataset(load_config(a.study.ae_config))
    ae, info, ckpt, digest = load_autoencoder(ae_run)
    blob = encode_dataset(ae, ds, ae_run, digest)
    x = ds.test
    D = x[0].numel()
    with torch.no_grad():
        mu, logvar = ae.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
        rec = -ae.log_px(x, z) / (D * math.log(2))
        kl = gaussian_kl(mu, logvar) / (D * math.log(2))
        codec = LatentCodec(ae, blob["scale"])
        xr = codec.decode(codec.encode(x))
        mse = (xr - x).square().flatten(1).mean(1)             # model space [-1, 1]: peak-to-peak 2
        psnr = 10 * torch.log10(4.0 / mse.clamp(min=1e-12))
        out = {"rec_bpd": mean_se(rec), "kl_bpd": mean_se(kl), "rec_plus_kl_bpd": mean_se(rec + kl),
               "psnr_db": mean_se(psnr), "latent_std": blob["std"], "scale": blob["scale"], "f": info["f"],
               "latent_channels": info["latent_channels"], "beta": info["beta"], "checkpoint_hash": digest}
        if evaluator is not None:
            out.update(reconstruction_fd(codec, x, evaluator, a.study.num_samples, a.seeds if a.study.num_samples else 0))
    return out


def part_beta(a, res):
    for beta in a.betas:
        key = f"beta={beta:g}"
        if key in res.setdefault("beta", {}):
            continue
        wd = os.path.join(a.workdir, f"ae_f2_beta{beta:g}")
        t0 = time.time()
        run_ok(ae_args(a, wd, 2, 2, beta, a.ae_steps))
        res["beta"][key] = {**ae_quality(a, wd), "steps": a.ae_steps, "wall_seconds": round(time.time() - t0, 1)}
        a.save(res)
        print(key, json.dumps(res["beta"][key]))


def part_cost(a, res):
    """Seconds per step of every model in alternating short runs (round r starts at model r mod 5). The latent
    cost runs read the latents of the arms' own autoencoders (trained here first if missing, a.ae_steps)."""
    if "cost" in res:
        return
    S = a.study
    for arm, (f, c, *_rest) in S.arms.items():
        if not os.path.isdir(ae_dir(a, f)):
            t0 = time.time()
            run_ok(ae_args(a, ae_dir(a, f), f, c, a.beta, a.ae_steps))
            res.setdefault("autoencoder_wall_seconds", {})[f"ae_f{f}"] = round(time.time() - t0, 1)
    names = ["pixel", *S.arms, *(f"ae_f{S.arms[arm][0]}" for arm in S.arms)]
    times = {k: [] for k in names}
    for r in range(a.rounds):
        for j in range(len(names)):
            k = names[(r + j) % len(names)]
            wd = os.path.join(a.workdir, "cost", f"{k}-{r}")
            if k.startswith("ae_"):
                f = int(k[4:])
                c = next(v[1] for v in S.arms.values() if v[0] == f)
                run_ok(ae_args(a, wd, f, c, a.beta, a.cost_steps))
            else:
                run_ok(score_args(a, k, wd, a.cost_steps, None if k == "pixel" else ae_dir(a, S.arms[k][0])))
            times[k].append(step_cost(wd))
    res["cost"] = {"seconds_per_step": {k: statistics.median(v) for k, v in times.items()},
                   "runs": times, "steps_per_run": a.cost_steps, "rounds": a.rounds,
                   "ratio_to_pixel": {k: mean_se([t / p for t, p in zip(v, times["pixel"])]) for k, v in times.items()},
                   "how": "median over alternating short runs of each model (round r starts at model r mod M), loop "
                          "time between the first and last logged steps (setup excluded), 1 thread; ratios paired "
                          "by round, mean and SE over rounds"}
    a.save(res)
    print(json.dumps(res["cost"]["seconds_per_step"]))


def part_train(a, res):
    c = res["cost"]["seconds_per_step"]
    plan = res.setdefault("train", {"budget_seconds": a.budget, "autoencoder_steps": a.ae_steps})
    for arm in ARM_NAMES:
        if arm in plan and plan[arm].get("done"):
            continue
        if arm == "pixel":
            ae_cost, steps, ae_run = 0.0, int(a.budget / c["pixel"]), None
        else:
            f = a.study.arms[arm][0]
            ae_cost = a.ae_steps * c[f"ae_f{f}"]
            steps = int((a.budget - ae_cost) / c[arm])
            ae_run = ae_dir(a, f)
        if steps < 1:
            plan[arm] = {"done": True, "infeasible": f"autoencoder alone costs {ae_cost:.0f}s of {a.budget}s"}
            continue
        wd = os.path.join(a.workdir, arm)
        t0 = time.time()
        run_ok(score_args(a, arm, wd, steps, ae_run))
        plan[arm] = {"steps": steps, "seconds_per_step": c[arm], "autoencoder_seconds": ae_cost,
                     "compute_seconds": steps * c[arm] + ae_cost, "wall_seconds": round(time.time() - t0, 1),
                     "workdir": wd, "done": True}
        a.save(res)
        print(arm, json.dumps(plan[arm]))
