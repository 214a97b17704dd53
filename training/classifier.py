"""Training a classifier for guidance and evaluation.

Noise-conditional (Song et al. 2021, App. I; Dhariwal & Nichol 2021): minimise the cross-entropy
of p_phi(y | x_t, t) on perturbed data x_t = m(t) x_0 + s(t) z, t ~ U(eps, T), under the same SDE
as the score model, so that grad_x log p_phi(y | x_t, t) approximates grad_x log p_t(y | x_t).
With `classifier.noise_conditional = False` it is an ordinary classifier of clean data, the
independent judge of samples (separately seeded, never used for guidance).

`train_classifier(config, workdir)` writes `workdir/<classifier.dir>/checkpoints/` and
`classifier.json` (test accuracy at several noise levels).
"""
from __future__ import annotations

import json
import math
import os
from typing import Optional

import torch
import torch.nn.functional as F

import sde_lib
from models import get_classifier, get_classifier_fn, noise_label
from sde_lib import expand_as_batch

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .data import BatchSampler, Dataset, get_dataset
from .labels import check_labels
from configs.errors import InputError


def classifier_dir(config, workdir: str) -> str:
    return os.path.join(workdir, config.classifier.dir)


def _perturb(sde, x0, t, generator):
    m, s = sde.marginal_coeffs(t)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    return expand_as_batch(m, x0) * x0 + expand_as_batch(s, x0) * z


@torch.no_grad()
def accuracy_by_time(sde, net, x, y, times, noise_conditional=True, seed=0, batch=1000):
    """{t: (accuracy, stderr)} of net on x perturbed to each t (clean x if not noise-conditional)."""
    fn = get_classifier_fn(sde, net, noise_conditional)
    out = {}
    g = torch.Generator().manual_seed(seed)
    for tv in times:
        correct = []
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            t = torch.full((xb.shape[0],), float(tv), dtype=xb.dtype)
            xt = _perturb(sde, xb, t, g) if noise_conditional else xb
            correct.append((fn(xt, t).argmax(1) == y[i:i + batch]).double())
        c = torch.cat(correct)
        out[float(tv)] = (c.mean().item(), (c.std() / math.sqrt(c.numel())).item())
    return out


def restore_classifier(config, workdir: str):
    """(classifier in eval mode, checkpoint path) from `workdir/<classifier.dir>/checkpoints`."""
    d = os.path.join(classifier_dir(config, workdir), "checkpoints")
    ckpt = latest_checkpoint(d)
    if ckpt is None:
        raise InputError(f"no classifier checkpoint in {d!r}; run --mode train_classifier first")
    net = get_classifier(config)
    try:
        net.load_state_dict(load_checkpoint(ckpt)["model"])
    except RuntimeError as e:
        raise InputError(f"classifier checkpoint {ckpt!r} does not fit config.classifier: "
                         f"{str(e).splitlines()[0]}") from None
    return net.eval(), ckpt


def train_classifier(config, workdir: str, dataset: Optional[Dataset] = None, progress: bool = False):
    """Train `config.classifier` on (perturbed) labelled data; returns (net, report)."""
    c = config.classifier
    if not (isinstance(c.n_iters, int) and c.n_iters >= 1 and isinstance(c.batch_size, int) and c.batch_size >= 1
            and c.lr > 0):
        raise InputError(f"classifier.n_iters and classifier.batch_size must be ints >= 1 and classifier.lr > 0, "
                         f"got {c.n_iters!r}, {c.batch_size!r}, {c.lr!r}")
    sde = sde_lib.get_sde(config)
    dataset = dataset if dataset is not None else get_dataset(config)
    check_labels(dataset, int(c.num_classes))
    out_dir = classifier_dir(config, workdir)
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    os.makedirs(ckpt_dir, exist_ok=True)
    torch.manual_seed(c.seed)
    net = get_classifier(config)
    opt = torch.optim.Adam(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sampler = BatchSampler(dataset.train.shape[0], c.batch_size, torch.Generator().manual_seed(c.seed + 1))
    gen = torch.Generator().manual_seed(c.seed + 2)
    nc = bool(c.noise_conditional)
    eps = sde.eps
    net.train()
    from tqdm import tqdm
    losses = []
    for step in tqdm(range(1, c.n_iters + 1), disable=not progress, desc="train_classifier"):
        idx = sampler.next()
        x0, y = dataset.train[idx], dataset.train_labels[idx]
        if nc:
            t = eps + (sde.T - eps) * torch.rand(x0.shape[0], generator=gen, dtype=x0.dtype)
            x, label = _perturb(sde, x0, t, gen), noise_label(sde, t)
        else:
            x, label = x0, torch.zeros(x0.shape[0], dtype=x0.dtype)
        loss = F.cross_entropy(net(x, label), y)
        if not torch.isfinite(loss):
            raise InputError(f"classifier loss is {loss.item()} at step {step}; try a lower classifier.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    ckpt = save_checkpoint(ckpt_dir, {"step": c.n_iters, "model": net.state_dict()}, c.n_iters, 1)
    net.eval()
    times = tuple(c.eval_times) if nc else (0.0,)
    acc = accuracy_by_time(sde, net, dataset.test, dataset.test_labels, times, nc, seed=c.seed + 3)
    report = {"noise_conditional": nc, "steps": c.n_iters, "final_loss": sum(losses[-50:]) / len(losses[-50:]),
              "test_accuracy": {str(t): {"accuracy": a, "stderr": se} for t, (a, se) in acc.items()},
              "num_test": int(dataset.test.shape[0]), "checkpoint": ckpt, "seed": c.seed}
    with open(os.path.join(out_dir, "classifier.json"), "w") as f:
        json.dump(report, f, indent=2)
    return net, report
