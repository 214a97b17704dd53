"""Guidance as score_fn combinators: each takes score functions and returns one, so every
sampler of `solvers.sample` (and `solvers.inpaint`) runs guided sampling unchanged.

Bayes' rule on the noisy marginals, p_t(x | y) = p_t(y | x) p_t(x) / p(y), gives

    grad_x log p_t(x | y) = grad_x log p_t(x) + grad_x log p_t(y | x).

- classifier guidance (Song et al. 2021, Sec. 5 / App. I; Dhariwal & Nichol 2021) adds
  `scale` times the gradient of a noise-conditional classifier;
- classifier-free guidance (Ho & Salimans 2022) mixes a conditional and an unconditional
  score, (1 + w) s(x, t | y) - w s(x, t);
- contrastive (CLIP-style) guidance adds `scale` times the gradient of an image-text similarity
  (`contrastive_guidance`; a noise-conditional contrastive model, `models.contrastive`);
- universal guidance (Bansal et al. 2023) differentiates any loss of the denoised
  (Tweedie) estimate x0_hat(x_t) = (x_t + s(t)^2 score(x_t, t)) / m(t) instead.

With the exact mixture, `gm.score_fn(sde)` guided by `gm.classifier_fn(sde)` at scale 1 is
exactly `gm.component(y).score_fn(sde)`; the tests check that, and every sampler on it.
"""
from __future__ import annotations

import math
from typing import Callable, Union

import torch

from sde_lib import expand_as_batch

from ._common import tweedie_mean

Tensor = torch.Tensor
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def _check_scale(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _labels(y, B: int, K: int, device) -> Tensor:
    """int or `[B]` integer labels -> `[B]` long tensor in [0, K)."""
    yt = torch.full((B,), int(y), dtype=torch.long, device=device) if isinstance(y, int) else y.to(device)
    if yt.shape != (B,):
        raise ValueError(f"labels y must be an int or a tensor of shape [B] = [{B}], got shape {tuple(yt.shape)}")
    if yt.numel() and (int(yt.min()) < 0 or int(yt.max()) >= K):
        raise ValueError(f"labels y must lie in [0, K) = [0, {K}), got values in [{int(yt.min())}, {int(yt.max())}]")
    return yt


def _check_y(y):
    if isinstance(y, bool) or not (isinstance(y, int) or (torch.is_tensor(y) and not y.is_floating_point()
                                                          and y.dim() == 1)):
        raise ValueError(f"y must be an int label or a 1-D integer tensor of labels, got {y!r}")
    if isinstance(y, int) and y < 0:
        raise ValueError(f"y must be a label >= 0, got {y}")


def _grad(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """grad_x sum(fn(x)); keeps the graph when the caller differentiates through x (likelihoods)."""
    keep = x.requires_grad
    with torch.enable_grad():
        xr = x if keep else x.detach().requires_grad_(True)
        out = fn(xr)
        g, = torch.autograd.grad(out.sum(), xr, create_graph=keep)
    return g


def classifier_guidance(score_fn: ScoreFn, log_prob_fn: Callable[[Tensor, Tensor], Tensor],
                        y: Union[int, Tensor], scale: float = 1.0) -> ScoreFn:
    """score(x, t) + scale * grad_x log p_t(y | x).

    Args:
        score_fn:    the unconditional score.
        log_prob_fn: `fn(x, t) -> [B, K]` log-probabilities or logits of a noise-conditional
                     classifier (a log-softmax is applied, so logits are fine).
        y:           an int (every sample) or `[B]` integer labels.
        scale:       guidance scale; 1 targets p_t(x | y), > 1 sharpens towards p_t(y | x)^scale.
    """
    _check_y(y)
    scale = _check_scale("scale", scale)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        base = score_fn(x, t)
        if scale == 0.0:
            return base

        def log_py(xr):
            logits = log_prob_fn(xr, t)
            if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
                raise ValueError(f"log_prob_fn must return [B, K] = [{x.shape[0]}, K], got {tuple(logits.shape)}")
            yy = _labels(y, x.shape[0], logits.shape[1], logits.device)
            return torch.log_softmax(logits, dim=1).gather(1, yy[:, None])[:, 0]
        return base + scale * _grad(log_py, x).to(base.dtype)

    return guided


def contrastive_guidance(score_fn: ScoreFn, similarity_fn: Callable[[Tensor, Tensor, Tensor], Tensor],
                         tokens: Tensor, scale: float = 1.0) -> ScoreFn:
    """score(x, t) + scale * grad_x sim(x, t, c): CLIP-style guidance (Nichol et al. 2022, Sec. 2.3, with
    a noise-conditional contrastive model; `models.contrastive`).

    Args:
        score_fn:      any score (a net, a CFG mix, the exact mixture).
        similarity_fn: `fn(x, t, tokens) -> [B]`, e.g. `models.contrastive.get_similarity_fn(sde, net)`;
                       with fn = log p_t(c | x) exactly and scale 1 the result is the exact score of
                       p_t(x | c) (tests/test_contrastive_oracle.py).
        tokens:        the prompt's token ids `[L]` (every sample) or `[B, L]`.
        scale:         guidance scale.
    """
    if not torch.is_tensor(tokens) or tokens.is_floating_point() or tokens.dim() not in (1, 2):
        raise ValueError(f"tokens must be an integer tensor [L] or [B, L], got {tokens!r}")
    scale = _check_scale("scale", scale)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        base = score_fn(x, t)
        if scale == 0.0:
            return base
        c = tokens.expand(x.shape[0], -1) if tokens.dim() == 1 else tokens
        if c.shape[0] != x.shape[0]:
            raise ValueError(f"tokens [B, L] must have B = {x.shape[0]} rows, got {tuple(c.shape)}")

        def sim(xr):
            out = similarity_fn(xr, t, c)
            if out.shape != (x.shape[0],):
                raise ValueError(f"similarity_fn must return [B] = [{x.shape[0]}], got {tuple(out.shape)}")
            return out
        return base + scale * _grad(sim, x).to(base.dtype)

    return guided


def classifier_free_guidance(cond_score_fn: ScoreFn, uncond_score_fn: ScoreFn, w: float) -> ScoreFn:
    """(1 + w) s(x, t | y) - w s(x, t)  (Ho & Salimans 2022, eq. 6, written for scores).

    w = 0 is the conditional score, w = -1 the unconditional one. With exact scores it equals
    classifier guidance at scale 1 + w. For one network with a null label, pass
    `models.get_score_fn(sde, model, y=label)` and `models.get_score_fn(sde, model)` (null label).
    """
    w = _check_scale("w", w)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        cond = cond_score_fn(x, t)
        if w == 0.0:
            return cond
        return (1.0 + w) * cond - w * uncond_score_fn(x, t)

    return guided


def tweedie_x0(sde, score_fn: ScoreFn, x: Tensor, t: Tensor):
    """(x0_hat, score) with x0_hat = E[x_0 | x_t] = (x_t + s(t)^2 score(x_t, t)) / m(t) (Tweedie)."""
    m, s = sde.marginal_coeffs(t)
    score = score_fn(x, t)
    return tweedie_mean(x, score, m, s), score


def universal_guidance(score_fn: ScoreFn, loss_fn: Callable[[Tensor], Tensor], scale: float = 1.0, *,
                       sde=None, backward_steps: int = 0, backward_lr: float = 0.1) -> ScoreFn:
    """Universal guidance (Bansal et al. 2023) as a score combinator.

    Forward guidance: the paper's eps_hat + scale s(t) grad_{x_t} loss(x0_hat(x_t)) becomes,
    with eps_hat = -s(t) score,

        score' = score - scale * grad_{x_t} loss(x0_hat(x_t)),

    the gradient taken through the score (autograd through `score_fn`). With the exact score
    and loss = -log p_0(y | x0), this is the "posterior at the posterior mean" approximation
    of grad log p_t(y | x_t) (the bench measures how far it lands from p(x | y)).

    Backward guidance (`backward_steps` > 0): delta = argmin loss(x0_hat + delta) by that many
    gradient steps of size `backward_lr` from 0; moving x0_hat by delta moves the score by
    m(t) delta / s(t)^2 (invert Tweedie), the paper's eps_hat - sqrt(a_t / (1 - a_t)) delta.
    Per-step self-recurrence is a loop over time, not a score: `solvers.inpaint`'s loop has it
    (`recurrence=k`; with an empty mask that is plain sampling with recurrence).

    Args:
        loss_fn: `loss(x0_hat) -> [B]` (or a scalar sum), differentiable.
        sde:     the SDE (for m(t), s(t)); default `score_fn.sde` (set by `models.get_score_fn`
                 and `GaussianMixture.score_fn`); ValueError if neither.
    """
    scale = _check_scale("scale", scale)
    if sde is None:
        sde = getattr(score_fn, "sde", None)
        if sde is None:
            raise ValueError("universal_guidance needs the SDE: pass sde=... (score_fn has no .sde attribute)")
    if isinstance(backward_steps, bool) or not isinstance(backward_steps, int) or backward_steps < 0:
        raise ValueError(f"backward_steps must be an int >= 0, got {backward_steps!r}")
    backward_lr = _check_scale("backward_lr", backward_lr)
    if backward_lr <= 0:
        raise ValueError(f"backward_lr must be > 0, got {backward_lr}")

    def guided(x: Tensor, t: Tensor) -> Tensor:
        keep = x.requires_grad
        with torch.enable_grad():
            xr = x if keep else x.detach().requires_grad_(True)
            x0, score = tweedie_x0(sde, score_fn, xr, t)
            if scale != 0.0:
                g, = torch.autograd.grad(loss_fn(x0).sum(), xr, create_graph=keep)
            else:
                g = torch.zeros_like(x)
        out = (score if keep else score.detach()) - scale * g
        if backward_steps:
            x0 = x0.detach()
            delta = torch.zeros_like(x0)
            for _ in range(backward_steps):
                with torch.enable_grad():
                    d = delta.requires_grad_(True)
                    gd, = torch.autograd.grad(loss_fn(x0 + d).sum(), d)
                delta = (delta - backward_lr * gd).detach()
            m, s = sde.marginal_coeffs(t)
            out = out + expand_as_batch(m / s ** 2, x) * delta
        return out

    return guided
