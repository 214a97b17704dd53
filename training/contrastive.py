"""Training the noise-conditional contrastive model (`models.contrastive`) for CLIP-style guidance.

Each step draws B (image, prompt) pairs, one t ~ U(eps, T) per pair and x_t = m(t) x_0 + s(t) z,
and minimises the symmetric InfoNCE loss over the in-batch prompts (CLIP's):

    L = 1/2 [CE(sim(x_t^i, c^j)_j, i) + CE(sim(x_t^j, c^i)_j, i)],   sim `[B, B]`.

Both cross-entropies are minimised by sim = log p_t(x_t | c) / p_t(x_t) + const (pairs with equal
prompts count as negatives; that keeps the optimum), so grad_x sim -> grad_x log p_t(c | x_t).

`fit_contrastive` is the loop for any `batch(step) -> (x0, tokens)`; `train_contrastive(config,
workdir)` (`--mode train_contrastive`) runs it on the prompts of a labelled image data set and writes
`workdir/<contrastive.dir>/checkpoints/` and `contrastive.json` (held-out retrieval accuracy).
"""
from __future__ import annotations

import json
import math
import os
from typing import Callable, Optional

import ml_collections
import torch
import torch.nn.functional as F

import sde_lib
from models import noise_label
from models.contrastive import build_contrastive
from sde_lib import expand_as_batch

from .batches import BatchSampler
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .data import get_dataset
from .prompts import PromptStream, attribute_bins, prompt_spec, prompt_training_set
from configs.errors import InputError

Tensor = torch.Tensor


def contrastive_loss(net, sde, x0: Tensor, tokens: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Symmetric InfoNCE on noisy images x_t (t ~ U(eps, T) per pair) and their prompts (scalar)."""
    B = x0.shape[0]
    t = sde.eps + (sde.T - sde.eps) * torch.rand(B, generator=generator, dtype=x0.dtype)
    m, s = sde.marginal_coeffs(t)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    xt = expand_as_batch(m, x0) * x0 + expand_as_batch(s, x0) * z
    logits = net.logits(xt, noise_label(sde, t), tokens)
    target = torch.arange(B)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def fit_contrastive(net, sde, batch: Callable[[int], tuple], n_iters: int, lr: float = 1e-3, seed: int = 0,
                    progress: bool = False):
    """Adam on `contrastive_loss` for n_iters steps of `batch(step) -> (x0 [B, *shape], tokens [B, L])`;
    returns the losses."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    losses = []
    from tqdm import tqdm
    for step in tqdm(range(1, n_iters + 1), disable=not progress, desc="train_contrastive"):
        x0, tokens = batch(step)
        loss = contrastive_loss(net, sde, x0, tokens, gen)
        if not torch.isfinite(loss):
            raise InputError(f"contrastive loss is {loss.item()} at step {step}; try a lower contrastive.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    return losses


def contrastive_dir(config, workdir: str) -> str:
    return os.path.join(workdir, config.contrastive.dir)


def new_contrastive(config, spec, block=None):
    """A fresh model of `block` (default config.contrastive), seeded by its seed."""
    block = block if block is not None else config.contrastive
    torch.manual_seed(block.seed)
    return build_contrastive(block, config.data, len(spec.vocab), spec.max_len)


def restore_contrastive(config, workdir: str):
    """(contrastive model in eval mode, its prompt spec, checkpoint path)."""
    spec = prompt_spec(config)
    d = os.path.join(contrastive_dir(config, workdir), "checkpoints")
    ckpt = latest_checkpoint(d)
    if ckpt is None:
        raise InputError(f"no contrastive model checkpoint in {d!r}; run --mode train_contrastive first")
    saved = load_checkpoint(ckpt)
    # the settings it was trained with (saved beside the weights; older checkpoints: config.contrastive)
    block = ml_collections.ConfigDict(saved["config"]) if "config" in saved else None
    net = new_contrastive(config, spec, block)
    try:
        net.load_state_dict(saved["model"])
    except RuntimeError as e:
        raise InputError(f"contrastive checkpoint {ckpt!r} does not fit config.contrastive: "
                         f"{str(e).splitlines()[0]}") from None
    return net.eval(), spec, ckpt


@torch.no_grad()
def retrieval_accuracy(net, sde, spec, x0: Tensor, y: Tensor, t: float, seed: int = 0):
    """(accuracy, stderr): share of images x_t whose most similar combination (first template) is their own."""
    bins = attribute_bins(x0, spec.dataset, spec.attributes)
    own = spec.combo_of(y, bins)
    texts = [spec.prompt(*spec.combo(i)) for i in range(spec.num_combos)]
    g = torch.Generator().manual_seed(seed)
    tt = torch.full((x0.shape[0],), float(t))
    m, s = sde.marginal_coeffs(tt)
    xt = expand_as_batch(m, x0) * x0 + expand_as_batch(s, x0) * torch.randn(x0.shape, generator=g)
    best = net.logits(xt, noise_label(sde, tt), spec.encode(texts)).argmax(1)
    c = (best == own).double()
    return c.mean().item(), (c.std() / math.sqrt(c.numel())).item()


def train_contrastive(config, workdir: str, progress: bool = False):
    """Train `config.contrastive` on the prompts of the data set (held-out combinations removed)."""
    c = config.contrastive
    sde = sde_lib.get_sde(config)
    spec = prompt_spec(config)
    full = get_dataset(config)
    if full.train_labels is None:
        raise InputError(f"--mode train_contrastive needs class labels; data set {full.name!r} has none")
    dataset = prompt_training_set(full, spec)
    stream = PromptStream(spec, dataset.train, dataset.train_labels)
    net = new_contrastive(config, spec)
    sampler = BatchSampler(dataset.train.shape[0], c.batch_size, torch.Generator().manual_seed(c.seed + 1))
    gen = torch.Generator().manual_seed(c.seed + 2)

    def batch(step):
        idx = sampler.next()
        return dataset.train[idx], stream(idx, gen)
    losses = fit_contrastive(net, sde, batch, c.n_iters, c.lr, c.seed + 3, progress)
    out_dir = contrastive_dir(config, workdir)
    ckpt = save_checkpoint(os.path.join(out_dir, "checkpoints"), {"step": c.n_iters, "model": net.state_dict(),
                                                                      "config": c.to_dict()},
                           c.n_iters, 1)
    spec.save(os.path.join(out_dir, "vocab.json"))
    acc = {str(t): retrieval_accuracy(net, sde, spec, full.test, full.test_labels, t, c.seed + 4)
           for t in (0.0, 0.25, 0.5)}
    report = {"steps": c.n_iters, "final_loss": sum(losses[-50:]) / len(losses[-50:]), "checkpoint": ckpt,
              "test_retrieval_accuracy": {t: {"accuracy": a, "stderr": se} for t, (a, se) in acc.items()},
              "chance": 1.0 / spec.num_combos, "note": "most similar of all class x bin combinations (first "
              "template) is the image's own, on test images at noise level t"}
    with open(os.path.join(out_dir, "contrastive.json"), "w") as f:
        json.dump(report, f, indent=2)
    return net, report


@torch.no_grad()
def posterior_kl(similarity_fn, gm, sde, prompts: Tensor, t_values, n: int = 2000, seed: int = 0) -> dict:
    """{t: (mean, stderr)} of KL(p_t(c | x_t) || q(c | x_t)) over x_t ~ p_t of the mixture `gm`, whose
    component k is described by the prompt `prompts[k]` `[K, L]`: p is the exact posterior
    (`gm.log_posterior_t`), q = softmax_k(sim(x_t, t, prompts[k]) + log w_k), the contrastive model's."""
    g = torch.Generator().manual_seed(seed)
    log_w = torch.log(gm.weights).float()
    out = {}
    for tv in t_values:
        x0 = gm.sample(n, generator=g).float()
        t = torch.full((n,), float(tv))
        m, s = sde.marginal_coeffs(t)
        xt = m[:, None] * x0 + s[:, None] * torch.randn(x0.shape, generator=g)
        log_p = gm.log_posterior_t(sde, xt.double(), t.double()).float()
        sims = torch.stack([similarity_fn(xt, t, prompts[k].expand(n, -1)) for k in range(prompts.shape[0])], 1)
        log_q = torch.log_softmax(sims + log_w, 1)
        kl = (log_p.exp() * (log_p - log_q)).sum(1)
        out[float(tv)] = (kl.mean().item(), (kl.std() / math.sqrt(n)).item())
    return out
