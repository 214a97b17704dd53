"""Benchmark: a latent score model against the pixel model at equal training compute (digits).

Parts (resumable: each finished part is kept in the JSON and skipped on the next run):

1. `beta`: the KL autoencoder (f = 2, 2 channels) at three KL weights: test reconstruction
   -log p(x|z) and KL in bits/dim of x (one posterior draw per image), PSNR of the quantised decoded
   posterior means, the latent std and scale factor, each with its SE over test images.
2. `cost`: seconds per training step of the pixel model, the latent models and the autoencoders,
   measured side by side in alternation (`--rounds` short runs each, median), so the other jobs on this
   shared machine load every model alike.
3. `train`: steps = budget / cost. The latent arm pays for its autoencoder: latent steps =
   (budget - autoencoder steps x autoencoder cost) / latent cost. Steps and costs are recorded.
4. `eval`: samples with one sampler at equal NFE (`--sampler`, `--steps`), `--seeds` sets of n test-size
   sets: FD / KID / precision / recall in the digits classifier's feature space (`evaluation`), SE over
   seeds, beside the floor (train vs test) and a Gaussian fitted to train; samples per second (decoding
   included); test bits/dim: the pixel model's ODE NLL and the latent models' bound with its three terms;
   the per-pixel baseline; the autoencoders' reconstruction FD and PSNR.

    python bench/latent_vs_pixel.py --part all          # -> bench/results/latent_vs_pixel.json (+ .png grids)

Fashion-MNIST (the issue's data) does not fit the 30-minute single-thread study budget of this machine at
any useful size: this script runs the 8x8 digits only and says so in its JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OUT = os.path.join(ROOT, "bench", "results", "latent_vs_pixel.json")
AE_CONFIG = os.path.join(ROOT, "configs", "digits_autoencoder.py")
LATENT_CONFIG = os.path.join(ROOT, "configs", "digits_latent_vp.py")
PIXEL_CONFIG = os.path.join(ROOT, "configs", "digits_vp_ddpmpp.py")
#: latent arms: name -> (autoencoder f, latent channels, latent image size, U-Net ch_mult, attention)
ARMS = {"latent_f2": (2, 2, 4, "(1, 2)", "(2,)"), "latent_f4": (4, 4, 2, "(1,)", "(2,)")}


def common(threads):
    return [f"--config.training.num_threads={threads}", "--config.training.progress=False"]


def ae_args(a, wd, f, c, beta, steps):
    return ["--config", AE_CONFIG, "--workdir", wd, "--mode", "train_autoencoder", f"--config.autoencoder.f={f}",
            f"--config.autoencoder.latent_channels={c}", f"--config.autoencoder.beta={beta}",
            f"--config.training.n_iters={steps}", "--config.training.snapshot_freq=100000", "--config.training.log_freq=10"]\
        + common(a.threads)


def score_args(a, arm, wd, steps, ae_dir=None):
    base = ["--workdir", wd, "--mode", "train", f"--config.training.n_iters={steps}",
            "--config.training.snapshot_freq=100000", "--config.training.log_freq=10"] + common(a.threads)
    if arm == "pixel":
        return ["--config", PIXEL_CONFIG] + base
    f, c, size, mult, attn = ARMS[arm]
    return ["--config", LATENT_CONFIG] + base + [f"--config.data.autoencoder={ae_dir}", f"--config.data.image_size={size}",
                                                 f"--config.data.num_channels={c}", f"--config.model.ch_mult={mult}",
                                                 f"--config.model.attn_resolutions={attn}"]


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


def ae_quality(ae_dir, evaluator=None):
    """Test reconstruction and KL (bits/dim of x), PSNR of quantised decoded means, latent std, rFD."""
    import torch
    from models.autoencoder import gaussian_kl
    from training.latent import LatentCodec, encode_dataset, load_autoencoder
    from training.data import get_dataset
    from run import load_config
    cfg = load_config(AE_CONFIG)
    ds = get_dataset(cfg)
    ae, info, ckpt, digest = load_autoencoder(ae_dir)
    blob = encode_dataset(ae, ds, ae_dir, digest)
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
        out["reconstruction_fd"] = evaluator.evaluate(xr)["fd"]
    return out


def part_beta(a, res):
    for beta in a.betas:
        key = f"beta={beta:g}"
        if key in res.setdefault("beta", {}):
            continue
        wd = os.path.join(a.workdir, f"ae_f2_beta{beta:g}")
        t0 = time.time()
        run_ok(ae_args(a, wd, 2, 2, beta, a.ae_steps))
        res["beta"][key] = {**ae_quality(wd), "steps": a.ae_steps, "wall_seconds": round(time.time() - t0, 1)}
        save(a, res)
        print(key, json.dumps(res["beta"][key]))


def part_cost(a, res):
    if "cost" in res:
        return
    wds = {"pixel": None, "latent_f2": None, "latent_f4": None, "ae_f2": None, "ae_f4": None}
    times = {k: [] for k in wds}
    ae2 = os.path.join(a.workdir, f"ae_f2_beta{a.beta:g}")
    ae4 = os.path.join(a.workdir, f"ae_f4_beta{a.beta:g}")
    if not os.path.isdir(ae4):                                       # the f = 4 arm's autoencoder
        run_ok(ae_args(a, ae4, 4, 4, a.beta, a.ae_steps))
    for r in range(a.rounds):
        for k in wds:
            wd = os.path.join(a.workdir, "cost", f"{k}-{r}")
            if k.startswith("ae_"):
                f, c = (2, 2) if k == "ae_f2" else (4, 4)
                run_ok(ae_args(a, wd, f, c, a.beta, a.cost_steps))
            else:
                run_ok(score_args(a, k, wd, a.cost_steps, ae2 if k == "latent_f2" else ae4))
            times[k].append(step_cost(wd))
    res["cost"] = {"seconds_per_step": {k: statistics.median(v) for k, v in times.items()},
                   "runs": times, "steps_per_run": a.cost_steps, "rounds": a.rounds,
                   "how": "median over alternating short runs of each model, loop time between the first and last "
                          "logged steps (setup excluded), batch 64, 1 thread"}
    save(a, res)


def part_train(a, res):
    c = res["cost"]["seconds_per_step"]
    plan = res.setdefault("train", {"budget_seconds": a.budget, "autoencoder_steps": a.ae_steps})
    for arm in ("pixel", "latent_f2", "latent_f4"):
        if arm in plan and plan[arm].get("done"):
            continue
        if arm == "pixel":
            ae_cost, steps, ae_dir = 0.0, int(a.budget / c["pixel"]), None
        else:
            f = ARMS[arm][0]
            ae_cost = a.ae_steps * c[f"ae_f{f}"]
            steps = int((a.budget - ae_cost) / c[arm])
            ae_dir = os.path.join(a.workdir, f"ae_f{f}_beta{a.beta:g}")
        if steps < 1:
            plan[arm] = {"done": True, "infeasible": f"autoencoder alone costs {ae_cost:.0f}s of {a.budget}s"}
            continue
        wd = os.path.join(a.workdir, arm)
        t0 = time.time()
        run_ok(score_args(a, arm, wd, steps, ae_dir))
        plan[arm] = {"steps": steps, "seconds_per_step": c[arm], "autoencoder_seconds": ae_cost,
                     "compute_seconds": steps * c[arm] + ae_cost, "wall_seconds": round(time.time() - t0, 1),
                     "workdir": wd, "done": True}
        save(a, res)


def part_eval(a, res):
    import torch
    import solvers
    from evaluation import FeatureSettings, SampleEvaluator, get_feature_extractor
    from runner import load_run
    from runner.compare import gaussian_sampler
    from runner.latent import latent_run_data
    from training.data import get_dataset
    from run import load_config
    ds = get_dataset(load_config(PIXEL_CONFIG))
    extractor = get_feature_extractor(ds, ds.labels, "", FeatureSettings(), log=print)
    n = ds.test.shape[0]
    ev = SampleEvaluator(ds.test, extractor, ds.num_levels, seed=3)
    out = res.setdefault("eval", {"sampler": a.sampler, "steps": a.sampler_steps, "num_samples": n,
                                  "seeds": a.seeds, "features": extractor.info.get("key", extractor.kind)})
    keys = ("fd", "kid", "precision", "recall")

    def summarise(rows):
        return {k: mean_se([r[k] for r in rows]) for k in keys}

    if "floor" not in out:
        gauss = gaussian_sampler(ds.train)
        rows_f, rows_g = [], []
        for s in range(a.seeds):
            gen = torch.Generator().manual_seed(1_000_003 * (s + 1))
            rows_f.append(ev.evaluate(ds.train[torch.randperm(ds.train.shape[0], generator=gen)[:n]]))
            rows_g.append(ev.evaluate(gauss(n, gen)))
        out["floor"], out["gaussian"] = summarise(rows_f), summarise(rows_g)
        save(a, res)
    for arm in ("pixel", "latent_f2", "latent_f4"):
        plan = res["train"].get(arm, {})
        if arm in out or "workdir" not in plan:
            continue
        r = load_run(plan["workdir"])
        codec = None if arm == "pixel" else latent_run_data(r.config, plan["workdir"]).codec
        rows, secs, nfe = [], [], 0
        for s in range(a.seeds):
            seeds = [1_000_003 * (s + 1) + i for i in range(n)]
            t0 = time.time()
            x, info = solvers.sample(r.sde, r.score_fn, (n, *r.shape), sampler=a.sampler, steps=a.sampler_steps,
                                     seeds=seeds, denoise=True)
            if codec is not None:
                x = codec.decode(x)
            secs.append(time.time() - t0)
            nfe = info.nfe
            rows.append(ev.evaluate(x))
        out[arm] = {**summarise(rows), "nfe": nfe, "samples_per_second": mean_se([n / t for t in secs])}
        out[arm]["bits_per_dim"] = bits_per_dim(a, plan["workdir"], arm)
        if codec is not None:
            out[arm]["autoencoder"] = ae_quality(r.config.data.autoencoder, ev)
        save(a, res)
        print(arm, json.dumps(out[arm]))


def part_grids(a, res):
    """bench/results/latent_vs_pixel_grids.png: rows test images, pixel, latent f=2, latent f=4 samples (16 each,
    the eval part's sampler and steps, seeds of its first sample set)."""
    import torch
    import solvers
    from runner import load_run
    from runner.figures import save_image_grid
    from runner.latent import latent_run_data
    from training.data import get_dataset, model_to_uint8
    from run import load_config
    rows = [get_dataset(load_config(PIXEL_CONFIG)).test[:16]]
    for arm in ("pixel", "latent_f2", "latent_f4"):
        wd = res["train"][arm]["workdir"]
        r = load_run(wd)
        x, _ = solvers.sample(r.sde, r.score_fn, (16, *r.shape), sampler=a.sampler, steps=a.sampler_steps,
                              seeds=[1_000_003 + i for i in range(16)], denoise=True)
        rows.append(x if arm == "pixel" else latent_run_data(r.config, wd).codec.decode(x))
    path = os.path.splitext(a.out)[0] + "_grids.png"
    save_image_grid(model_to_uint8(torch.cat(rows)), path, cols=16)
    print(path)


def fmt(v, digits=3):
    return "n/a" if v is None else f"{v['mean']:.{digits}f} ± {v['stderr']:.{digits}f}"


def part_report(a, res):
    """Markdown tables of the JSON (bench/results/latent_vs_pixel.md), pasted into docs/bench/latent-vs-pixel.md."""
    lines = ["| beta | -log p(x\\|z) bits/dim | KL bits/dim | PSNR dB | latent std | scale |", "|---|---|---|---|---|---|"]
    for k, r in res.get("beta", {}).items():
        lines.append(f"| {r['beta']:g} | {fmt(r['rec_bpd'])} | {fmt(r['kl_bpd'])} | {fmt(r['psnr_db'], 2)} | "
                     f"{r['latent_std']:.3f} | {r['scale']:.3f} |")
    c = res.get("cost", {}).get("seconds_per_step", {})
    lines += ["", "| model | s/step | steps | autoencoder s | compute s | wall s |", "|---|---|---|---|---|---|"]
    for arm, r in res.get("train", {}).items():
        if isinstance(r, dict) and "steps" in r:
            lines.append(f"| {arm} | {r['seconds_per_step']:.4f} | {r['steps']} | {r['autoencoder_seconds']:.0f} | "
                         f"{r['compute_seconds']:.0f} | {r['wall_seconds']:.0f} |")
    lines.append(f"\nautoencoder s/step: f=2 {c.get('ae_f2', float('nan')):.4f}, f=4 {c.get('ae_f4', float('nan')):.4f}")
    e = res.get("eval", {})
    lines += ["", "| model | FD | KID | precision | recall | samples/s | bits/dim | per-pixel baseline |",
              "|---|---|---|---|---|---|---|---|"]
    for arm in ("floor", "gaussian", "pixel", "latent_f2", "latent_f4"):
        if arm not in e:
            continue
        r = e[arm]
        b = r.get("bits_per_dim", {})
        bpd = f"{b['bits_per_dim']:.3f} ± {b['stderr']:.3f}" if b else "—"
        pp = f"{b['baselines']['per_pixel']:.3f} ± {b['baselines_stderr']['per_pixel']:.3f}" if b else "—"
        lines.append(f"| {arm} | {fmt(r['fd'])} | {fmt(r['kid'], 4)} | {fmt(r['precision'])} | {fmt(r['recall'])} | "
                     f"{fmt(r.get('samples_per_second'), 0) if 'samples_per_second' in r else '—'} | {bpd} | {pp} |")
    lines += ["", "| model | -log p(x\\|z) | log q(z\\|x) | -log p(z) | bound | scale | rFD | PSNR dB |",
              "|---|---|---|---|---|---|---|---|"]
    for arm in ("latent_f2", "latent_f4"):
        if arm in e:
            b, ae = e[arm]["bits_per_dim"], e[arm]["autoencoder"]
            t = b["terms"]
            lines.append(f"| {arm} | " + " | ".join(f"{t[k]['bits_per_dim']:.3f} ± {t[k]['stderr']:.3f}"
                                                    for k in ("rec", "log_q", "neg_log_pz"))
                         + f" | {b['bits_per_dim']:.3f} ± {b['stderr']:.3f} | {b['scale']:.3f} | "
                           f"{ae.get('reconstruction_fd', float('nan')):.3f} | {fmt(ae['psnr_db'], 2)} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.splitext(a.out)[0] + ".md", "w") as f:
        f.write(text)
    print(text)


def bits_per_dim(a, wd, arm):
    """--mode eval on the first --eval-n test images (pixel: ODE NLL, latent: the bound, 1 posterior draw)."""
    import glob
    args = ["--workdir", wd, "--mode", "eval", f"--config.eval.num_samples={a.eval_n}", "--config.eval.repeats=1",
            "--config.eval.estimator=ode"] + common(a.threads)
    run_ok(args)
    path = sorted(glob.glob(os.path.join(wd, "eval", "*", "eval.json")))[-1]
    rep = json.load(open(path))
    keep = ("bits_per_dim", "stderr", "terms", "posterior_samples", "baselines", "baselines_stderr", "num_examples",
            "scale", "estimator", "quantity")
    return {k: rep[k] for k in keep if k in rep}


def save(a, res):
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2)
    os.replace(tmp, a.out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", default="all", choices=("beta", "cost", "train", "eval", "report", "grids", "all"))
    p.add_argument("--workdir", default=os.path.join("runs", "latent_vs_pixel"))
    p.add_argument("--out", default=OUT)
    p.add_argument("--betas", type=lambda s: [float(v) for v in s.split(",")], default=[1e-4, 1e-3, 1e-2])
    p.add_argument("--beta", type=float, default=1e-3, help="KL weight of the latent arms' autoencoders")
    p.add_argument("--ae-steps", type=int, default=1500)
    p.add_argument("--budget", type=float, default=240.0, help="training compute seconds per arm")
    p.add_argument("--cost-steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--sampler-steps", type=int, default=20)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-n", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    res = json.load(open(a.out)) if os.path.exists(a.out) else {}
    res["data"] = "digits (8x8, 17 levels); Fashion-MNIST did not fit the 30-minute single-thread study budget"
    command = "python bench/latent_vs_pixel.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res["commands"] = res.get("commands", []) + [command]
    for part, fn in (("beta", part_beta), ("cost", part_cost), ("train", part_train), ("eval", part_eval),
                     ("report", part_report), ("grids", part_grids)):
        if a.part in (part, "all"):
            fn(a, res)
    save(a, res)


if __name__ == "__main__":
    main()
