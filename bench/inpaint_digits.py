"""Benchmark: inpainting test digits by replacement, judged by an independent classifier.

For several masks and with / without the Langevin corrector, inpaints the first `n` test digits
with the trained model's unconditional (null-label) score and reports
- class kept: share of outputs the clean-data judge assigns to the digit's true label (binomial SE),
- squared error per unknown pixel against the original (SE over images; raw outputs, as
  `--mode inpaint`'s inpaint.json reports it),
with reference rows: the judge on the originals, and on the inputs with the unknown part filled by
the mean training image. The judge sees every input snapped to the data's own levels (digits:
17), as it was trained. Needs a workdir with the model and the judge (see bench/guidance_digits.py).

    python bench/inpaint_digits.py --workdir runs/cond
    -> bench/results/inpaint_digits.json
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
from solvers import make_mask  # noqa: E402
from training import restore_model  # noqa: E402
from training.classifier import restore_classifier  # noqa: E402
from training.data import get_dataset  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "bench"))
from guidance_digits import on_levels, run_config  # noqa: E402


def judge_kept(judge_fn, x, y, num_levels):
    xq = on_levels(x, num_levels)       # the judge was trained on the data's own levels
    with torch.no_grad():
        c = (judge_fn(xq, torch.zeros(x.shape[0])).argmax(1) == y).double()
    return c.mean().item(), (c.std() / math.sqrt(c.numel())).item()


def mse_unknown(x, x0, unknown):
    per = (((x - x0) ** 2) * unknown).flatten(1).sum(1) / unknown.flatten(1).sum(1)
    return per.mean().item(), (per.std() / math.sqrt(per.numel())).item()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="runs/cond")
    p.add_argument("--config", default=None, help="default: the workdir's saved config.py")
    p.add_argument("--judge_config", default=os.path.join(ROOT, "configs", "digits_classifier.py"))
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--steps", type=int, default=500)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    t0 = time.time()
    config, jconfig = run_config(args.config, args.workdir), load_config(args.judge_config)
    import sde_lib
    sde = sde_lib.get_sde(config)
    model, step, ckpt = restore_model(config, args.workdir, use_ema=True)
    score_fn = models.get_score_fn(sde, model)          # null label: unconditional
    judge, judge_ckpt = restore_classifier(jconfig, args.workdir)
    judge_fn = models.get_classifier_fn(sde, judge, noise_conditional=False)
    ds = get_dataset(config)
    x0, y, L = ds.test[:args.n], ds.test_labels[:args.n], ds.num_levels
    mean_img = ds.train.mean(0, keepdim=True)
    rows = [{"method": "originals (reference)", "class_kept": judge_kept(judge_fn, x0, y, L)}]
    for mask_name in ("right_half", "bottom_half", "box", "random"):
        mask = make_mask(mask_name, ds.shape, generator=torch.Generator().manual_seed(0))
        unknown = (~mask).expand_as(x0)
        fill = torch.where(mask, x0, mean_img.expand_as(x0))
        rows.append({"mask": mask_name, "method": "mean-image fill (reference)",
                     "class_kept": judge_kept(judge_fn, fill, y, L), "mse_unknown": mse_unknown(fill, x0, unknown)})
        print(rows[-1], flush=True)
        for corrector in ("none", "langevin"):
            x, info = solvers.inpaint(sde, score_fn, x0, mask, sampler="pc", corrector=corrector, steps=args.steps,
                                      denoise=True, generator=torch.Generator().manual_seed(1))
            rows.append({"mask": mask_name, "method": f"replacement, corrector {corrector}", "nfe": info.nfe,
                         "class_kept": judge_kept(judge_fn, x, y, L), "mse_unknown": mse_unknown(x, x0, unknown)})
            print(rows[-1], flush=True)
    report = {"workdir": args.workdir, "checkpoint": ckpt, "step": step, "judge": judge_ckpt, "n": args.n,
              "steps": args.steps, "num_levels": L, "results": rows, "seconds": round(time.time() - t0, 1)}
    out = os.path.join(ROOT, "bench", "results", "inpaint_digits.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {out} in {report['seconds']}s")


if __name__ == "__main__":
    main()
