"""Benchmark: conditional samplers against the exact conditional of a Gaussian mixture.

Three studies, every one scored against a closed-form conditional distribution:

1. Classifier guidance at scale 1 with the exact classifier log p_t(y | x) and the exact
   score, for every sampler in solvers.SAMPLERS: the target is the component p(x | y).
2. Inpainting by replacement (Song et al. 2021) on a 4-D mixture with correlated components,
   2 of 4 coordinates observed: error against `GaussianMixture.condition` as a function of
   steps and corrector (none / Langevin / annealed Langevin) and of RePaint-style recurrence.
3. Universal guidance (Bansal et al. 2023) with loss -log p_0(y | x0_hat): forward guidance
   at several scales, backward steps, self-recurrence; target p(x | y).
4. Replacement on one correlated 2-D Gaussian: its conditional mean and variance against the
   exact N(rho v, 1 - rho^2), the simplest case where the bias shows.
5. Classifier guidance with the exact score and a trained noise-conditional classifier (200 to
   3,000 steps): the classifier's share of the error, with its KL to the exact p_t(y | x).

Metrics: dlogp = mean log p_target(samples) - mean log p_target(equal-size true sample), with
its standard error (a local helper with the definition of solvers.metrics.dlogp), and sliced
W1 to true target samples with the true-vs-true floor. dlogp < 0: mass where the target has
little; dlogp > 0: too concentrated on its modes; both metrics together.

    python bench/guidance_gmm.py      # a few minutes, 1 thread
    -> bench/results/guidance_gmm.json, bench/results/guidance_gmm.png
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import solvers  # noqa: E402
from models.analytic import make_mixture  # noqa: E402
from sde_lib import VESDE, VPSDE  # noqa: E402
from solvers import classifier_guidance, inpaint, sliced_wasserstein, universal_guidance  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
N = 2000
F64 = torch.float64
GUIDED_OPTIONS = {
    "euler_maruyama": dict(steps=200), "pc": dict(steps=100, corrector="annealed_langevin", step_size=0.1),
    "ancestral": dict(steps=200), "reverse_diffusion": dict(steps=200),
    "annealed_langevin": dict(steps=25, corrector_steps=20, step_size=0.5), "ddim": dict(steps=100),
    "heun": dict(steps=40), "ode": dict(method="dopri5", rtol=1e-5, atol=1e-5), "sde": dict(method="euler", steps=200),
}


def dlogp(logp, x, ref):
    a, b = logp(x), logp(ref)
    return (a.mean() - b.mean()).item(), math.sqrt(a.var().item() / a.numel() + b.var().item() / b.numel())


def sw(x, ref):
    return sliced_wasserstein(x, ref, generator=torch.Generator().manual_seed(0))


def score_against(target, x, seed):
    """dlogp (+ SE) and sliced W1 of x against `target` (a GaussianMixture); floor from two true sets."""
    g = torch.Generator().manual_seed(seed)
    ref, ref2 = target.sample(x.shape[0], generator=g), target.sample(x.shape[0], generator=g)
    d, se = dlogp(target.log_prob, x, ref)
    return {"dlogp": d, "dlogp_se": se, "sliced_w1": sw(x, ref), "sliced_w1_floor": sw(ref2, ref)}


def assigned(gm, x, y):
    t0 = torch.zeros(x.shape[0], dtype=x.dtype)
    return (gm.classifier_fn(VPSDE())(x, t0).argmax(1) == y).double().mean().item()


def study_classifier(ring):
    rows = []
    y = 0
    target = ring.component(y)
    true = target.sample(N, generator=torch.Generator().manual_seed(99))
    base = {"sampler": "true component samples (reference)", "nfe": 0, "assigned_to_y": assigned(ring, true, y)}
    rows.append({**base, **score_against(target, true, 1)})
    for sampler in solvers.SAMPLERS:
        sde = VESDE() if sampler == "annealed_langevin" else VPSDE()
        for scale in (0.0, 1.0):
            score = classifier_guidance(ring.score_fn(sde), ring.classifier_fn(sde), y, scale)
            x, info = solvers.sample(sde, score, (N, 2), sampler, generator=torch.Generator().manual_seed(2),
                                     dtype=F64, **GUIDED_OPTIONS.get(sampler, dict(steps=200)))
            rows.append({"sampler": sampler, "scale": scale, "sde": type(sde).__name__, "nfe": info.nfe,
                         "options": GUIDED_OPTIONS.get(sampler, dict(steps=200)),
                         "assigned_to_y": assigned(ring, x, y), **score_against(target, x, 1)})
            print(f"classifier guidance {sampler:18s} scale {scale}: {rows[-1]['dlogp']:+.4f} +- "
                  f"{rows[-1]['dlogp_se']:.4f}  assigned {rows[-1]['assigned_to_y']:.3f}", flush=True)
    return rows


def study_inpaint(gm, sde):
    """Average over 4 observations (x_0, x_2) drawn from the data."""
    mask = torch.tensor([True, False, True, False])
    obs = gm.sample(4, generator=torch.Generator().manual_seed(11))
    rows = []
    settings = [("none", {}), ("langevin", {"snr": 0.16}), ("annealed_langevin", {"step_size": 0.1})]
    for steps in (25, 50, 100, 200, 400):
        for corrector, ckw in settings:
            for recurrence in ((1, 3) if corrector == "none" else (1,)):
                per = []
                nfe = 0
                for j in range(obs.shape[0]):
                    target = gm.condition(mask, obs[j])
                    xk = obs[j].expand(N, 4).clone()
                    x, info = inpaint(sde, gm.score_fn(sde), xk, mask, sampler="pc", corrector=corrector,
                                      steps=steps, recurrence=recurrence,
                                      generator=torch.Generator().manual_seed(100 + j), **ckw)
                    assert torch.equal(x[:, mask], xk[:, mask])
                    per.append(score_against(target, x[:, ~mask], 200 + j))
                    nfe = info.nfe
                k = len(per)
                row = {"steps": steps, "corrector": corrector, "recurrence": recurrence, "nfe": nfe,
                       "dlogp": sum(p["dlogp"] for p in per) / k,
                       "dlogp_se": math.sqrt(sum(p["dlogp_se"] ** 2 for p in per)) / k,
                       "sliced_w1": sum(p["sliced_w1"] for p in per) / k,
                       "sliced_w1_floor": sum(p["sliced_w1_floor"] for p in per) / k}
                rows.append(row)
                print(f"inpaint steps {steps:4d} {corrector:18s} rec {recurrence}: dlogp {row['dlogp']:+.4f} +- "
                      f"{row['dlogp_se']:.4f}  SW1 {row['sliced_w1']:.4f} (floor {row['sliced_w1_floor']:.4f})",
                      flush=True)
    # reference: the exact conditional score would be exact; the replacement error is what is left
    return rows


def study_universal(ring, sde):
    y = 0
    target = ring.component(y)
    t0 = lambda x: torch.zeros(x.shape[0], dtype=x.dtype)
    loss = lambda x0: -ring.classifier_fn(VPSDE())(x0, t0(x0))[:, y]      # -log p_0(y | x0_hat)
    rows = []
    runs = [("exact classifier guidance (reference)", None, {}, 1)]
    for scale in (1.0, 2.0, 4.0):
        runs.append((f"forward, scale {scale}", scale, {}, 1))
    runs.append(("forward 1 + backward 5 steps (lr 0.05)", 1.0, {"backward_steps": 5, "backward_lr": 0.05}, 1))
    runs.append(("forward 1 + recurrence 3", 1.0, {}, 3))
    runs.append(("forward 2 + recurrence 3", 2.0, {}, 3))
    for label, scale, kw, rec in runs:
        if scale is None:
            score = classifier_guidance(ring.score_fn(sde), ring.classifier_fn(sde), y, 1.0)
        else:
            score = universal_guidance(ring.score_fn(sde), loss, scale, sde=sde, **kw)
        empty = torch.zeros(2, dtype=torch.bool)
        x, info = inpaint(sde, score, torch.zeros(N, 2, dtype=F64), empty, sampler="reverse_diffusion", steps=200,
                          recurrence=rec, generator=torch.Generator().manual_seed(5))
        rows.append({"method": label, "scale": scale, "recurrence": rec, "nfe": info.nfe, **kw,
                     "assigned_to_y": assigned(ring, x, y), **score_against(target, x, 3)})
        print(f"universal {label:40s}: dlogp {rows[-1]['dlogp']:+.4f} +- {rows[-1]['dlogp_se']:.4f} "
              f"SW1 {rows[-1]['sliced_w1']:.4f} (floor {rows[-1]['sliced_w1_floor']:.4f}) "
              f"assigned {rows[-1]['assigned_to_y']:.3f}", flush=True)
    return rows


def study_gaussian(sde):
    """Replacement on one correlated 2-D Gaussian (unit variances, correlation rho), x_0 = 1.5 observed:
    exact conditional N(1.5 rho, 1 - rho^2); replacement's mean and variance of x_1."""
    rows = []
    for rho in (0.0, 0.5, 0.9):
        from models.analytic import GaussianMixture
        gm = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, rho], [rho, 1.0]]])
        xk = torch.tensor([1.5, 0.0], dtype=F64).expand(4 * N, 2)
        x, info = inpaint(sde, gm.score_fn(sde), xk, torch.tensor([True, False]), sampler="reverse_diffusion",
                          steps=400, generator=torch.Generator().manual_seed(0))
        xu = x[:, 1]
        rows.append({"rho": rho, "steps": 400, "n": xu.numel(), "exact_mean": 1.5 * rho, "exact_var": 1 - rho ** 2,
                     "mean": xu.mean().item(), "mean_se": (xu.std() / math.sqrt(xu.numel())).item(),
                     "var": xu.var().item(), "var_se": xu.var().item() * math.sqrt(2 / (xu.numel() - 1))})
        print(f"gaussian rho {rho}: mean {rows[-1]['mean']:.3f} (exact {1.5 * rho:.3f}), var {rows[-1]['var']:.3f} "
              f"(exact {1 - rho ** 2:.3f})", flush=True)
    return rows


def study_learned_classifier(ring, sde, n_iters=(200, 1000, 3000)):
    """Classifier guidance at scale 1 with the exact score and a *trained* noise-conditional MLP
    classifier (training.classifier on 20,000 draws of the ring, labels = components): how much of the
    error is the classifier's, measured against the exact component."""
    import tempfile
    from configs.default import get_default_config
    import models
    from training.classifier import train_classifier
    from training.data import Dataset
    g = torch.Generator().manual_seed(21)
    x, y = ring.sample(24000, generator=g, return_labels=True)
    ds = Dataset("ring", x[:20000].float(), x[20000:].float(), is_image=False, eight_bit=False,
                 train_labels=y[:20000], test_labels=y[20000:], num_classes=ring.K)
    target = ring.component(0)
    rows = []
    for iters in n_iters:
        cfg = get_default_config()
        cfg.data.dataset, cfg.data.dim = "mixture", 2
        cfg.classifier.name, cfg.classifier.num_classes, cfg.classifier.dropout = "mlp", ring.K, 0.0
        cfg.classifier.n_iters, cfg.classifier.batch_size, cfg.classifier.lr = iters, 256, 2e-3
        with tempfile.TemporaryDirectory() as wd:
            net, rep = train_classifier(cfg, wd, dataset=ds)
        learned = models.get_classifier_fn(sde, net)
        clf = lambda xx, t: learned(xx.float(), t.float()).double()
        score = classifier_guidance(ring.score_fn(sde), clf, 0, 1.0)
        xs, info = solvers.sample(sde, score, (N, 2), "reverse_diffusion", steps=200, dtype=F64,
                                  generator=torch.Generator().manual_seed(5))
        # mean KL(exact || learned) of p_t(y | x_t) over x_t ~ p_t, t ~ U(0.01, 1)
        x0 = ring.sample(N, generator=torch.Generator().manual_seed(6))
        t = 0.01 + 0.99 * torch.rand(N, generator=torch.Generator().manual_seed(7), dtype=F64)
        m, s = sde.marginal_coeffs(t)
        xt = m[:, None] * x0 + s[:, None] * torch.randn(N, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
        le = ring.classifier_fn(sde)(xt, t)
        with torch.no_grad():
            ll = torch.log_softmax(clf(xt, t), 1)
        kl = (le.exp() * (le - ll)).sum(1)
        rows.append({"classifier_steps": iters, "kl_exact_learned": kl.mean().item(),
                     "kl_se": (kl.std() / math.sqrt(N)).item(), "nfe": info.nfe,
                     "assigned_to_y": assigned(ring, xs, 0), **score_against(target, xs, 3)})
        print(f"learned classifier {iters} steps: KL {rows[-1]['kl_exact_learned']:.4f}, dlogp "
              f"{rows[-1]['dlogp']:+.4f} +- {rows[-1]['dlogp_se']:.4f}, SW1 {rows[-1]['sliced_w1']:.4f}, "
              f"assigned {rows[-1]['assigned_to_y']:.3f}", flush=True)
    return rows


def plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for (corr, rec), style in {("none", 1): "o-", ("langevin", 1): "s-", ("annealed_langevin", 1): "^-",
                               ("none", 3): "o--"}.items():
        rs = [r for r in report["inpaint"] if r["corrector"] == corr and r["recurrence"] == rec]
        ax.errorbar([r["nfe"] for r in rs], [r["dlogp"] for r in rs], yerr=[2 * r["dlogp_se"] for r in rs],
                    fmt=style, capsize=2, label=f"corrector {corr}" + (f", recurrence {rec}" if rec > 1 else ""))
    ax.axhline(0, color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("score evaluations (NFE)")
    ax.set_ylabel("dlogp vs exact conditional (nats, ±2 SE)")
    ax.set_title("inpainting by replacement, 4-D mixture, 2 observed")
    ax.legend(fontsize=7)
    ax = axes[1]
    rs = report["universal"]
    ax.barh(range(len(rs)), [r["sliced_w1"] for r in rs], color="C1")
    ax.axvline(rs[0]["sliced_w1_floor"], color="k", ls=":", label="true-vs-true floor")
    ax.set_yticks(range(len(rs)))
    ax.set_yticklabels([r["method"] for r in rs], fontsize=7)
    ax.set_xlabel("sliced W1 to p(x | y)")
    ax.set_title("universal guidance, loss -log p(y | x0_hat)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    torch.set_flush_denormal(True)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    t0 = time.time()
    ring = make_mixture("ring", D=2, K=3, scale=1.5, std=0.8)
    gm4 = make_mixture("random", D=4, K=3, scale=1.5, std=0.8, generator=torch.Generator().manual_seed(3))
    report = {
        "n_samples": N,
        "mixtures": {"classifier/universal": "ring, D=2, K=3, radius 1.5, std 0.8, target component 0",
                     "inpaint": "make_mixture('random', D=4, K=3, scale=1.5, std=0.8, seed 3); observed coords 0, 2; "
                                "4 observations drawn from the mixture (seed 11), metrics averaged"},
        "metrics": "dlogp = mean log p_target(samples) - mean log p_target(true sample of size N), SE; sliced W1 "
                   "(256 directions) to a true sample, floor = between two true samples",
        "classifier_guidance": study_classifier(ring),
        "inpaint": study_inpaint(gm4, VPSDE()),
        "universal": study_universal(ring, VPSDE()),
        "inpaint_gaussian": study_gaussian(VPSDE()),
        "learned_classifier": study_learned_classifier(ring, VPSDE()),
    }
    report["seconds"] = round(time.time() - t0, 1)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "guidance_gmm.json"), "w") as f:
        json.dump(report, f, indent=1)
    plot(report, os.path.join(OUT, "guidance_gmm.png"))
    print(f"wrote {OUT}/guidance_gmm.json and .png in {report['seconds']}s")


if __name__ == "__main__":
    main()
