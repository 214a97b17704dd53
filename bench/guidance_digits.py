"""Benchmark: the guidance-scale trade-off on 8x8 digits (trained models, no oracle).

For classifier-free guidance (weight w) and classifier guidance (scale) on the class-conditional
digits model, draws `per_class` samples of every class with one sampler and fixed seeds, and
scores them with an *independent* judge: a clean-data classifier trained separately (its own
seed, never used for guidance; `configs/digits_classifier.py`):

- accuracy: share of samples the judge assigns to the intended class (binomial SE);
- diversity: mean pairwise L2 distance between samples of one class (pixels in [-1, 1]),
  averaged over classes (SE over classes);
- sliced W1 of all samples to the test split (fidelity and coverage together).

Samples are first snapped to the data set's own levels (`Dataset.num_levels`; digits: 17 levels,
bin centres (2k + 1)/17 - 1): the judge was trained on those values and the test split holds them,
so all three metrics compare like with like. The model's config is the workdir's saved config.py.

Reference rows: the test split itself (judge accuracy, diversity), and unguided samples with the
null label (w = -1: the unconditional model). Needs a workdir with the conditional model
(`--mode train`), the guidance classifier (`--mode train_classifier`) and the judge
(`--config configs/digits_classifier.py --mode train_classifier`).

    python bench/guidance_digits.py --workdir runs/cond     # a few minutes on 1 thread
    -> bench/results/guidance_digits.json, bench/results/guidance_digits.png
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402
import solvers  # noqa: E402
from runner.config_io import load_config  # noqa: E402
from runner.guided import guided_score_fn  # noqa: E402
from training import restore_model  # noqa: E402
from training.classifier import restore_classifier  # noqa: E402
from runner.rundir import check_against_saved, load_saved_config  # noqa: E402
from training.data import get_dataset  # noqa: E402
from training.levels import levels_to_model, model_to_levels  # noqa: E402

OUT = os.path.join(ROOT, "bench", "results")
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "digits_cond_vp_ddpmpp.py")


def diversity(x, y, K):
    per = []
    for k in range(K):
        xk = x[y == k].flatten(1).double()
        if xk.shape[0] < 2:
            continue
        d = torch.cdist(xk, xk)
        n = xk.shape[0]
        per.append((d.sum() / (n * (n - 1))).item())
    t = torch.tensor(per)
    return t.mean().item(), (t.std() / math.sqrt(t.numel())).item()


def on_levels(x, num_levels):
    """Samples as data: each value snapped to the bin centre of the data set's own level
    (digits: 17 levels, (2k + 1)/17 - 1); continuous data are left as they are."""
    return x if num_levels is None else levels_to_model(model_to_levels(x, num_levels), num_levels)


def run_config(config_file, workdir):
    """The workdir's saved config (run.py's rule); `config_file`, if given, must agree on model/sde/data."""
    saved = load_saved_config(workdir)
    if saved is None:
        return load_config(config_file or DEFAULT_CONFIG)
    if config_file:
        check_against_saved(load_config(config_file), saved, workdir)
    return saved


def judge_accuracy(judge_fn, x, y):
    """x already on the data's levels: the judge was trained on those bin centres."""
    with torch.no_grad():
        c = (judge_fn(x, torch.zeros(x.shape[0])).argmax(1) == y).double()
    return c.mean().item(), (c.std() / math.sqrt(c.numel())).item()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="runs/cond")
    p.add_argument("--config", default=None, help="default: the workdir's saved config.py (else the "
                   "digits_cond config); if given, it must agree with the saved one on model/sde/data")
    p.add_argument("--judge_config", default=os.path.join(ROOT, "configs", "digits_classifier.py"))
    p.add_argument("--per_class", type=int, default=20)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--sampler", default="ddim")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    t0 = time.time()
    config = run_config(args.config, args.workdir)
    judge_config = load_config(args.judge_config)      # only its classifier block is used
    import sde_lib
    sde = sde_lib.get_sde(config)
    model, step, ckpt = restore_model(config, args.workdir, use_ema=True)
    judge, judge_ckpt = restore_classifier(judge_config, args.workdir)
    judge_fn = models.get_classifier_fn(sde, judge, noise_conditional=False)
    ds = get_dataset(config)
    K, L = ds.num_classes, ds.num_levels
    y = torch.arange(K).repeat_interleave(args.per_class)
    proj = lambda: torch.Generator().manual_seed(0)
    test = ds.test          # already bin centres of the data's levels
    rows = [{"method": "test split (reference)", "scale": None, "n": int(test.shape[0]),
             "judge_accuracy": judge_accuracy(judge_fn, test, ds.test_labels),
             "diversity": diversity(test, ds.test_labels, K),
             "sliced_w1_to_test": solvers.sliced_wasserstein(ds.train[:test.shape[0]], test, generator=proj())}]
    print(rows[0], flush=True)
    settings = [("cfg", w) for w in (-1.0, 0.0, 0.5, 1.0, 2.0, 4.0)] + \
               [("classifier", s) for s in (1.0, 2.0, 4.0, 8.0)]
    for method, scale in settings:
        score_fn, desc = guided_score_fn(config, args.workdir, sde, model, y, guidance=method, scale=scale)
        x, info = solvers.sample(sde, score_fn, (y.numel(), *ds.shape), sampler=args.sampler, steps=args.steps,
                                 denoise=True, generator=torch.Generator().manual_seed(1))
        x = on_levels(x, L)     # every metric sees samples on the data's levels, as the test split is
        row = {"method": method, "scale": scale, "n": int(y.numel()), "nfe": info.nfe,
               "seconds": round(info.seconds, 1), "judge_accuracy": judge_accuracy(judge_fn, x, y),
               "diversity": diversity(x, y, K),
               "sliced_w1_to_test": solvers.sliced_wasserstein(x, test, generator=proj())}
        rows.append(row)
        print(row, flush=True)
    report = {"workdir": args.workdir, "checkpoint": ckpt, "step": step, "judge": judge_ckpt,
              "sampler": args.sampler, "steps": args.steps, "per_class": args.per_class,
              "num_levels": L, "dequantize": bool(config.training.get("dequantize", False)),
              "notes": "cfg: (1 + w) s(x|y) - w s(x) with the null label (w = -1: unconditional, w = 0: "
                       "conditional); classifier: null-label score + scale * grad log p_phi(y | x_t); accuracy "
                       "by the independent clean-data judge; diversity = mean within-class pairwise L2",
              "results": rows, "seconds": round(time.time() - t0, 1)}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "guidance_digits.json"), "w") as f:
        json.dump(report, f, indent=1)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ref = rows[0]
    for method, marker in (("cfg", "o-"), ("classifier", "s-")):
        rs = [r for r in rows if r["method"] == method]
        xs = [r["scale"] for r in rs]
        axes[0].errorbar(xs, [r["judge_accuracy"][0] for r in rs], yerr=[2 * r["judge_accuracy"][1] for r in rs],
                         fmt=marker, capsize=2, label=method)
        axes[1].errorbar(xs, [r["diversity"][0] for r in rs], yerr=[2 * r["diversity"][1] for r in rs],
                         fmt=marker, capsize=2, label=method)
    axes[0].axhline(ref["judge_accuracy"][0], color="k", ls=":", label="test split")
    axes[1].axhline(ref["diversity"][0], color="k", ls=":", label="test split")
    axes[0].set_ylabel("judge accuracy (±2 SE)")
    axes[1].set_ylabel("within-class mean pairwise L2 (±2 SE)")
    for ax in axes:
        ax.set_xlabel("guidance scale (cfg: w; classifier: scale)")
        ax.legend(fontsize=8)
    fig.suptitle("guidance-scale trade-off, class-conditional digits")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "guidance_digits.png"), dpi=100)
    print(f"wrote {OUT}/guidance_digits.json and .png in {report['seconds']}s")


if __name__ == "__main__":
    main()
