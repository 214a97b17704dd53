"""Benchmark: prompt adherence on 8x8 digits, measured on the samples (docs/bench/prompts-digits.md).

Prompts "a {thickness} {class} {slant}" for a fixed set of seen combinations (one per class) and of
held-out ones (never in training: configs/digits_prompts_vp_ddpmpp.py). For each method, `per_prompt`
samples per prompt (fixed seeds, one sampler), snapped to the digits' 17 levels, then:

- class accuracy: the independent clean-data judge (configs/digits_classifier.py) names the prompt's class;
- thickness / slant accuracy: the attribute formulas (training/prompts.py) put the sample in the prompt's bin;
- all: class and both attributes right;  (binomial SE over samples)
- diversity: mean pairwise L2 within a prompt's samples, averaged over prompts (SE over prompts);
- FD: Fréchet distance to the test split in the feature space of evaluation's FeatureNet, SE by a
  bootstrap over samples (the prompts' mix of combinations is not the data's: compare rows, not to 0).

Methods: cross-attention + CFG over the empty prompt at w in {0, 1, 3}; CLIP-style guidance (the
contrastive model's gradient) on the empty-prompt score at 3 scales; both (CFG w=1 + CLIP); the
class-conditional net (class only) as the reference; the test split as the floor; the one-token
net (prompts = class names) at w = 0 beside the class-conditional net at the same training step and
seeds; and the cost of
cross-attention (parameters, seconds per score call, ratio measured side by side).

    python bench/prompts_digits.py --prompts runs/prompts --cond runs/cond --onetoken runs/onetoken
    -> bench/results/prompts_digits.json (resumable: finished rows are kept), prompts_digits.png,
       prompts_digits_grids.png
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
from evaluation.features import get_feature_extractor  # noqa: E402
from evaluation.metrics import frechet_distance  # noqa: E402
from models.contrastive import get_similarity_fn  # noqa: E402
from runner import load_run  # noqa: E402
from runner.config_io import load_config  # noqa: E402
from training.classifier import restore_classifier  # noqa: E402
from training.contrastive import restore_contrastive  # noqa: E402
from training.data import get_dataset  # noqa: E402
from training.levels import levels_to_model, model_to_levels  # noqa: E402
from training.prompts import attribute_bins, prompt_spec  # noqa: E402

OUT = os.path.join(ROOT, "bench", "results")
#: (class, thickness bin, slant bin): seen ones (one per class) and held-out ones
SEEN = [(0, 0, 1), (1, 2, 2), (2, 1, 0), (3, 2, 1), (4, 0, 1), (5, 1, 2), (6, 2, 0), (7, 0, 2), (8, 1, 1), (9, 0, 0)]
HELD_OUT = [(7, 2, 1), (7, 2, 2), (3, 0, 1), (3, 0, 0), (4, 1, 2), (4, 0, 2)]


def mean_se(v):
    v = torch.as_tensor(v, dtype=torch.float64)
    return [v.mean().item(), (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else None]


def scores(x, y, bins_wanted, group, judge_fn, spec, feats, ref_feats, seed=0):
    """Every metric of samples x (on the data's levels) of prompts (y, bins_wanted), grouped by prompt."""
    with torch.no_grad():
        cls = judge_fn(x, torch.zeros(x.shape[0])).argmax(1) == y
    got = attribute_bins(x, "digits", spec.attributes)
    attr = got == bins_wanted
    out = {"class_accuracy": mean_se(cls.double()), "n": int(x.shape[0])}
    for a, name in enumerate(spec.attributes):
        out[f"{name}_accuracy"] = mean_se(attr[:, a].double())
    out["all_accuracy"] = mean_se((cls & attr.all(1)).double())
    div = []
    for gi in group.unique():
        xg = x[group == gi].flatten(1).double()
        n = xg.shape[0]
        div.append((torch.cdist(xg, xg).sum() / (n * (n - 1))).item())
    out["diversity"] = mean_se(div)
    f = feats(x)
    g = torch.Generator().manual_seed(seed)
    boot = [frechet_distance(ref_feats, f[torch.randint(0, f.shape[0], (f.shape[0],), generator=g)])
            for _ in range(20)]
    out["fd"] = [frechet_distance(ref_feats, f), torch.tensor(boot).std().item()]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prompts", default="runs/prompts", help="prompt net + contrastive model (train_contrastive)")
    p.add_argument("--cond", default="runs/cond", help="class-conditional net; holds the judge (judge/)")
    p.add_argument("--onetoken", default="", help="prompt net trained on one-token prompts (class names)")
    p.add_argument("--judge_config", default=os.path.join(ROOT, "configs", "digits_classifier.py"))
    p.add_argument("--per_prompt", type=int, default=20)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--fresh", action="store_true", help="discard finished rows")
    p.add_argument("--table", action="store_true", help="print the markdown tables of the saved JSON and stop")
    p.add_argument("--out", default=OUT, help="results folder (default bench/results)")
    args = p.parse_args()
    out = args.out
    json_path = os.path.join(out, "prompts_digits.json")
    if args.table:
        print(tables(json.load(open(json_path))))
        return
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    report = json.load(open(json_path)) if os.path.exists(json_path) and not args.fresh else {"results": []}
    done = {r["method"] for r in report["results"]}

    def save():
        os.makedirs(out, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)

    run = load_run(args.prompts)
    cond = load_run(args.cond)
    sde, config = run.sde, run.config
    spec = prompt_spec(config)
    judge, judge_ckpt = restore_classifier(load_config(args.judge_config), args.cond)
    judge_fn = models.get_classifier_fn(sde, judge, noise_conditional=False)
    clip, _, clip_ckpt = restore_contrastive(config, args.prompts)
    sim = get_similarity_fn(sde, clip)
    ds = get_dataset(config)
    L = ds.num_levels
    fx = get_feature_extractor(ds, ds.labels)
    ref_feats = fx.features(ds.test)
    report.update(prompts_run=run.checkpoint, cond_run=cond.checkpoint, judge=judge_ckpt, contrastive=clip_ckpt,
                  sampler=args.sampler, steps=args.steps, per_prompt=args.per_prompt, held_out=list(config.prompts.held_out),
                  seen=[spec.prompt(c, (a, b)) for c, a, b in SEEN],
                  held_out_prompts=[spec.prompt(c, (a, b)) for c, a, b in HELD_OUT])

    def prompts_of(combos):
        k = args.per_prompt
        y = torch.tensor([c for c, _, _ in combos]).repeat_interleave(k)
        bins = torch.tensor([[a, b] for _, a, b in combos]).repeat_interleave(k, 0)
        tokens = spec.encode([spec.prompt(c, (a, b)) for c, a, b in combos]).repeat_interleave(k, 0)
        group = torch.arange(len(combos)).repeat_interleave(k)
        return y, bins, tokens, group

    def draw(score_fn, n, seed0=0):
        t0 = time.time()
        x, info = solvers.sample(sde, score_fn, (n, *ds.shape), sampler=args.sampler, steps=args.steps,
                                 seeds=list(range(seed0, seed0 + n)), denoise=True)
        return levels_to_model(model_to_levels(x, L), L), info.nfe, time.time() - t0

    def prompt_score(tokens, w=None, clip_scale=0.0):
        uncond = models.get_score_fn(sde, run.model)
        base = uncond
        if w is not None:
            c = models.get_score_fn(sde, run.model, y=tokens)
            base = solvers.classifier_free_guidance(c, uncond, w)
        if clip_scale:
            base = solvers.contrastive_guidance(base, sim, tokens, clip_scale)
        return base

    methods = [(f"cfg w={w}", dict(w=float(w))) for w in (0, 1, 3)] + \
              [(f"clip scale={s}", dict(clip_scale=float(s))) for s in (1, 3, 10)] + \
              [("cfg w=1 + clip scale=3", dict(w=1.0, clip_scale=3.0)), ("class-conditional (reference)", None)]
    grids = {}
    if "test split (floor)" not in done:
        row = {"method": "test split (floor)", "class_accuracy": mean_se((judge_fn(ds.test, torch.zeros(
            ds.test.shape[0])).argmax(1) == ds.test_labels).double()),
            "fd_train_vs_test": frechet_distance(ref_feats, fx.features(ds.train[:ds.test.shape[0]]))}
        report["results"].append(row)
        save()
    for name, kw in methods:
        if name in done:
            continue
        row = {"method": name}
        for split, combos in (("seen", SEEN), ("held_out", HELD_OUT)):
            y, bins, tokens, group = prompts_of(combos)
            if kw is None:        # the class-conditional net, class only
                score_fn = models.get_score_fn(sde, cond.model, y=y)
            else:
                score_fn = prompt_score(tokens, **kw)
            x, nfe, sec = draw(score_fn, y.numel())
            row[split] = scores(x, y, bins, group, judge_fn, spec, fx.features, ref_feats)
            row[split].update(nfe=nfe, seconds=round(sec, 1))
            grids[(name, split)] = x
        report["results"].append(row)
        save()
        print(name, {s: {k: v for k, v in row[s].items() if k in ("class_accuracy", "all_accuracy", "fd")}
                     for s in ("seen", "held_out")}, flush=True)
    if args.onetoken and "one-token prompts, w=0" not in done:
        one = load_run(args.onetoken)
        ospec = prompt_spec(one.config)
        y = torch.arange(10).repeat_interleave(args.per_prompt)
        toks = ospec.encode([ospec.class_names[k] for k in y.tolist()])
        group = y.clone()
        same = load_run(args.cond, checkpoint=one.step)      # the class-conditional net after as many steps
        for name, score_fn in (("one-token prompts, w=0", models.get_score_fn(sde, one.model, y=toks)),
                               ("class-conditional, same seeds and steps", models.get_score_fn(sde, same.model, y=y))):
            x, nfe, sec = draw(score_fn, y.numel(), seed0=1000)
            got = attribute_bins(x, "digits", spec.attributes)
            m = scores(x, y, got, group, judge_fn, spec, fx.features, ref_feats)
            for key in [k for k in m if k.endswith("_accuracy") and k != "class_accuracy"]:
                m.pop(key)            # no attributes in a one-token prompt
            r = {"method": name, "all": m}
            report["results"].append(r)
            grids[(name, "all")] = x
        report["onetoken_run"], report["onetoken_cond_run"] = one.checkpoint, same.checkpoint
        save()
    if "cost" not in report:
        report["cost"] = cost(run.model, cond.model, sde, ds.shape)
        save()
    figures(report, grids, out)
    print(json.dumps(report["cost"]))


def _f(v, digits=3):
    return "-" if v is None else f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}" if v[1] is not None else f"{v[0]:.{digits}f}"


def tables(report):
    """The docs' tables (docs/bench/prompts-digits.md) from the saved JSON."""
    head = ("| method | split | class acc. | thickness acc. | slant acc. | all three | diversity | FD | s |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in report["results"]:
        for split in ("seen", "held_out", "all"):
            if split in r:
                m = r[split]
                lines.append(f"| {r['method']} | {split} | {_f(m['class_accuracy'])} | {_f(m.get('thickness_accuracy'))} | "
                             f"{_f(m.get('slant_accuracy'))} | {_f(m.get('all_accuracy'))} | {_f(m['diversity'], 2)} | "
                             f"{_f(m['fd'], 2)} | {m.get('seconds', '-')} |")
        if "fd_train_vs_test" in r:
            lines.append(f"| {r['method']} | test | {_f(r['class_accuracy'])} | 1 (by definition) | 1 | - | - | "
                         f"{r['fd_train_vs_test']:.2f} (train vs test) | - |")
    c = report.get("cost")
    if c:
        lines += ["", "| net | parameters | seconds per score call (batch 64) |", "|---|---|---|",
                  f"| prompt net (text encoder {c['params_text_encoder']:,}) | {c['params_prompt_net']:,} | "
                  f"{_f(c['seconds_prompt_net'], 4)} |",
                  f"| class-conditional | {c['params_class_conditional']:,} | {_f(c['seconds_class_conditional'], 4)} |",
                  f"| ratio (alternate calls, {c['reps']} pairs) | {c['params_prompt_net'] / c['params_class_conditional']:.2f} | "
                  f"{_f(c['time_ratio'], 2)} |"]
    return "\n".join(lines)


def cost(prompt_net, cond_net, sde, shape, B=64, reps=30):
    """Parameters and seconds per score call (batch B), the two nets timed alternately."""
    x, t = torch.randn(B, *shape), torch.full((B,), 0.5)
    tokens = torch.randint(1, 20, (B, 6))
    fa = models.get_score_fn(sde, prompt_net, y=tokens)
    fb = models.get_score_fn(sde, cond_net, y=torch.zeros(B, dtype=torch.long))
    ta, tb = [], []
    with torch.no_grad():
        fa(x, t), fb(x, t)
        for _ in range(reps):
            t0 = time.perf_counter(); fa(x, t); ta.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); fb(x, t); tb.append(time.perf_counter() - t0)
    ta, tb = torch.tensor(ta), torch.tensor(tb)
    ratio = ta / tb
    n = lambda m: sum(p.numel() for p in m.parameters())
    text = sum(p.numel() for p in prompt_net.text_encoder.parameters())
    return {"batch": B, "reps": reps, "params_prompt_net": n(prompt_net), "params_text_encoder": text,
            "params_class_conditional": n(cond_net), "seconds_prompt_net": mean_se(ta),
            "seconds_class_conditional": mean_se(tb), "time_ratio": mean_se(ratio)}


def figures(report, grids, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in report["results"] if "seen" in r]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for split, marker in (("seen", "o"), ("held_out", "s")):
        axes[0].errorbar(range(len(rows)), [r[split]["all_accuracy"][0] for r in rows],
                         yerr=[2 * r[split]["all_accuracy"][1] for r in rows], fmt=marker, capsize=2, label=split)
        axes[1].errorbar(range(len(rows)), [r[split]["fd"][0] for r in rows],
                         yerr=[2 * r[split]["fd"][1] for r in rows], fmt=marker, capsize=2, label=split)
    for ax, title in zip(axes, ("prompt adherence (class and both attributes right)", "FD to the test split")):
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r["method"] for r in rows], rotation=35, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "prompts_digits.png"), dpi=110)
    if grids:
        keys = list(grids)
        fig, axes = plt.subplots(1, len(keys), figsize=(2.2 * len(keys), 3))
        for ax, key in zip(axes if len(keys) > 1 else [axes], keys):
            x = grids[key][::max(1, grids[key].shape[0] // 40)][:40]
            n = x.shape[0]
            cols = 5
            img = torch.ones(((n + cols - 1) // cols) * 9, cols * 9)
            for i in range(n):
                r, c = divmod(i, cols)
                img[r * 9:r * 9 + 8, c * 9:c * 9 + 8] = (x[i, 0] + 1) / 2
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{key[0]}\n{key[1]}", fontsize=6)
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "prompts_digits_grids.png"), dpi=110)


if __name__ == "__main__":
    main()
