"""Benchmark: the contrastive model against the exact posterior over prompts (the oracle).

A 2-D Gaussian mixture of three components, each described by one prompt (tests/test_contrastive_oracle.py
builds it; this script imports that setup so the numbers are the ones the test asserts bounds on).
The noise-conditional contrastive model is trained on noisy samples with InfoNCE for several step
counts; reported is KL(p_t(c | x_t) || softmax_c sim(x_t, t, c)) at several t, mean and SE over
2,000 draws x_t ~ p_t. Reference rows: an untrained model (the ceiling) and a model trained with
its noise label fixed at 0 (it cannot know t: the control for noise-conditioning).

    OMP_NUM_THREADS=1 python bench/contrastive_gmm.py       # about two minutes on 1 thread
    -> bench/results/contrastive_gmm.json
"""
from __future__ import annotations

import json
import os
import sys
import time

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sde_lib  # noqa: E402
from models.contrastive import get_similarity_fn  # noqa: E402
from tests.test_contrastive_oracle import PROMPTS, contrastive_net, mixture, train_on_mixture  # noqa: E402
from training.contrastive import fit_contrastive, posterior_kl  # noqa: E402

T_VALUES = (0.01, 0.05, 0.25, 0.5, 0.75)


class NoiseBlind(nn.Module):
    """An image encoder fed noise label 0 whatever t is."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, label):
        return self.inner(x, torch.zeros_like(label))


def main():
    torch.set_num_threads(1)
    gm, sde = mixture(), sde_lib.VPSDE()
    rows = []

    def row(name, net, seconds=None):
        kl = posterior_kl(get_similarity_fn(sde, net), gm, sde, PROMPTS, T_VALUES, seed=5)
        rows.append({"method": name, "kl": {str(t): {"value": v, "stderr": se} for t, (v, se) in kl.items()},
                     "seconds": seconds})
        print(rows[-1], flush=True)

    row("untrained (ceiling)", contrastive_net())
    for steps in (150, 600):
        t0 = time.time()
        net = train_on_mixture(gm, sde, steps)
        row(f"trained {steps} steps", net, round(time.time() - t0, 1))
    blind = contrastive_net()
    blind.image = NoiseBlind(blind.image)
    g = torch.Generator().manual_seed(1)

    def batch(step):
        x0, y = gm.sample(256, generator=g, return_labels=True)
        return x0.float(), PROMPTS[y]
    fit_contrastive(blind, sde, batch, 600, lr=2e-3, seed=2)
    row("noise label fixed at 0, 600 steps (control)", blind)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "contrastive_gmm.json"), "w") as f:
        json.dump({"sde": "vpsde", "t": list(T_VALUES), "draws": 2000, "results": rows,
                   "note": "KL(exact posterior over the 3 prompts || contrastive model's), nats"}, f, indent=1)


if __name__ == "__main__":
    main()
