"""Benchmark: variance of the likelihood-weighted DSM loss, t ~ U(eps, T) against t ∝ g^2/s^2.

The per-example loss terms of `training.losses.continuous_dsm_loss_per_sample` on the digits'
train split (dequantised, 17 levels) with a trained network (or the untrained one), under both
ways of drawing t. Both estimate the same expectation; the ratio of their variances is how
many times more examples uniform t needs for the same precision.

    python bench/likelihood_weighting.py [--workdir runs/demo] [--config configs/x.py]
    -> bench/results/likelihood_weighting.json

Writes numbers, asserts nothing (tests/test_likelihood_training.py checks the expectation).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402
import sde_lib  # noqa: E402
from runner.config_io import load_config  # noqa: E402
from solvers import TimeProposal  # noqa: E402
from training import get_dataset  # noqa: E402
from training.data import dequantize  # noqa: E402
from training.losses import continuous_dsm_loss_per_sample  # noqa: E402
from training.loop import build_state, restore_model  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=os.path.join(os.path.dirname(OUT), "..", "configs", "default.py"))
    ap.add_argument("--workdir", default=None, help="a trained run (its EMA model); default: untrained")
    ap.add_argument("--draws", type=int, default=8, help="passes over the train split")
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    sde = sde_lib.get_sde(config)
    model = restore_model(config, args.workdir)[0] if args.workdir else build_state(config).model.eval()
    score_fn = models.get_score_fn(sde, model)
    ds = get_dataset(config)
    gen = torch.Generator().manual_seed(0)
    prop = TimeProposal(sde, sde.eps)
    out = {}
    for name, p in (("uniform", None), ("importance", prop)):
        terms = []
        with torch.no_grad():
            for _ in range(args.draws):
                for i in range(0, ds.train.shape[0], 500):
                    x = ds.train[i:i + 500]
                    x = dequantize(x, gen, ds.num_levels) if ds.num_levels else x
                    terms.append(continuous_dsm_loss_per_sample(sde, score_fn, x, gen, likelihood_weighting=True,
                                                                proposal=p))
        t = torch.cat(terms).double()
        out[name] = {"mean": t.mean().item(), "stderr": (t.std() / math.sqrt(t.numel())).item(),
                     "variance": t.var().item(), "n": t.numel()}
        print(f"{name:<10} loss {out[name]['mean']:.2f} +- {out[name]['stderr']:.2f}  per-example variance "
              f"{out[name]['variance']:.4g}", flush=True)
    out["variance_ratio"] = out["uniform"]["variance"] / out["importance"]["variance"]
    out["model"] = args.workdir or "untrained"
    print(f"variance ratio uniform / importance: {out['variance_ratio']:.1f}")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "likelihood_weighting.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
