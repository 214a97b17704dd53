"""The prompt-adherence study, for any data set with prompt attributes (digits, Fashion-MNIST):
`bench/prompts_digits.py` and `bench/prompts_fashion_mnist.py` run it with the settings of `STUDIES`.

Prompts of fixed (class, bin, bin) combinations: seen ones (one per class) and held-out ones (a
bin of a class held out of training by the prompt config). For each method, `per_prompt` samples per
prompt (fixed seeds, one sampler, the same for every row), snapped to the data's levels, then:

- class accuracy: the study's judge (never used for guidance) names the prompt's class;
- attribute accuracy: the attribute formulas (training/prompts.py) put the sample in the prompt's bin;
- all: class and every attribute right;  (binomial SE over samples)
- diversity: mean pairwise L2 within a prompt's samples, averaged over prompts (SE over prompts; prompts
  with one sample skipped);
- FD: Fréchet distance to the test split in the feature space of evaluation's FeatureNet, SE by a
  bootstrap over samples (the prompts' mix of combinations is not the data's: compare rows, not to 0).

Methods: cross-attention + CFG over the empty prompt at w in {0, 1, 3}; CLIP-style guidance (the
contrastive model's gradient) on the empty-prompt score at 3 scales; both (CFG w=1 + CLIP); the
class-conditional net (class only) as the reference; train images of the same combinations as the
floor (as many per prompt as samples); optionally the one-token net (prompts = class names) at w = 0
beside the class-conditional net at the same training step and seeds; and the cost of
cross-attention (parameters, seconds per score call, ratio measured side by side). Every drawn
sample is kept in `--samples` (a .pt file, default under runs/) so that the figures
(bench/prompts_report.py) can be redrawn; `--grids` draws the samples of finished rows again
(same seeds, no metrics) when that file is missing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

import models
import solvers
from evaluation.features import FeatureSettings, get_feature_extractor
from evaluation.metrics import frechet_distance
from models.contrastive import get_similarity_fn
from runner import load_run
from runner.config_io import load_config
from runner.rundir import load_saved_config
from training.classifier import restore_classifier
from training.contrastive import restore_contrastive
from training.data import get_dataset
from training.levels import levels_to_model, model_to_levels
from training.prompts import attribute_bins, prompt_spec

from bench.prompts_report import figures, tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results")

#: per data set: (class, bin of attribute 1, bin of attribute 2) prompts, seen (one per class) and held out
#: (a bin of a class that config.prompts.held_out takes out of training), and the sampling settings
STUDIES = {
    "digits": dict(
        seen=[(0, 0, 1), (1, 2, 2), (2, 1, 0), (3, 2, 1), (4, 0, 1), (5, 1, 2), (6, 2, 0), (7, 0, 2), (8, 1, 1),
              (9, 0, 0)],
        held_out=[(7, 2, 1), (7, 2, 2), (3, 0, 1), (3, 0, 0), (4, 1, 2), (4, 0, 2)],
        per_prompt=20, steps=50, judge="classifier", clip_scales=(1, 3, 10), feature_epochs=30, cost_reps=30,
        runs=dict(prompts="runs/prompts", cond="runs/cond", onetoken="")),
    # attributes (size, brightness) of configs/fashion_mnist_prompts_vp_ddpmpp.py; held out there: coat:faint,
    # bag:small, dress:bright. Seen combinations: >= 790 train images each.
    "fashion_mnist": dict(
        seen=[(0, 2, 0), (1, 0, 2), (2, 2, 2), (3, 1, 1), (4, 1, 2), (5, 0, 0), (6, 2, 1), (7, 0, 1), (8, 2, 2),
              (9, 0, 1)],
        held_out=[(4, 2, 0), (4, 1, 0), (8, 0, 1), (8, 0, 2), (3, 0, 2), (3, 1, 2)],
        per_prompt=10, steps=25, judge="features", clip_scales=(1, 3, 10), feature_epochs=8, cost_reps=10,
        runs=dict(prompts="runs/fm_prompts", cond="runs/fm_cond", onetoken="")),
}
FLOOR = "train images of the prompts' combinations (floor)"


def mean_se(v):
    v = torch.as_tensor(v, dtype=torch.float64)
    return [v.mean().item(), (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else None]


def scores(x, y, bins_wanted, group, judge, spec, feats, ref_feats, seed=0):
    """Every metric of samples x (on the data's levels) of prompts (y, bins_wanted), grouped by prompt."""
    cls = judge(x) == y
    got = attribute_bins(x, spec.dataset, spec.attributes)
    attr = got == bins_wanted
    out = {"class_accuracy": mean_se(cls.double()), "n": int(x.shape[0])}
    for a, name in enumerate(spec.attributes):
        out[f"{name}_accuracy"] = mean_se(attr[:, a].double())
    out["all_accuracy"] = mean_se((cls & attr.all(1)).double())
    div = []
    for gi in group.unique():
        xg = x[group == gi].flatten(1).double()
        n = xg.shape[0]
        if n < 2:
            continue
        div.append((torch.cdist(xg, xg).sum() / (n * (n - 1))).item())
    out["diversity"] = mean_se(div)
    f = feats(x)
    g = torch.Generator().manual_seed(seed)
    boot = [frechet_distance(ref_feats, f[torch.randint(0, f.shape[0], (f.shape[0],), generator=g)])
            for _ in range(20)]
    out["fd"] = [frechet_distance(ref_feats, f), torch.tensor(boot).std().item()]
    return out


def get_judge(study, ds, sde, args):
    """(predict(x) -> labels `[B]`, description): the digits' clean-data classifier trained in the
    class-conditional run (configs/digits_classifier.py), or the FeatureNet classifier of the FD features."""
    if study["judge"] == "classifier":
        judge, ckpt = restore_classifier(load_config(args.judge_config), args.cond)
        fn = models.get_classifier_fn(sde, judge, noise_conditional=False)

        def predict(x):
            with torch.no_grad():
                return fn(x, torch.zeros(x.shape[0])).argmax(1)
        return predict, {"judge": ckpt}
    fx = get_feature_extractor(ds, ds.labels, "", FeatureSettings(epochs=study["feature_epochs"]))
    return fx.predict, {"judge": f"FeatureNet (evaluation/features.py), FeatureSettings(epochs={study['feature_epochs']})",
                        "judge_test_accuracy": fx.info.get("test_accuracy")}


def parse(dataset, argv=None):
    st = STUDIES[dataset]
    p = argparse.ArgumentParser(description=f"prompt adherence on {dataset}")
    p.add_argument("--prompts", default=st["runs"]["prompts"], help="prompt net + contrastive model (train_contrastive)")
    p.add_argument("--cond", default=st["runs"]["cond"], help="class-conditional net (digits: holds the judge, judge/)")
    p.add_argument("--onetoken", default=st["runs"]["onetoken"], help="prompt net trained on one-token prompts")
    p.add_argument("--judge_config", default=os.path.join(ROOT, "configs", "digits_classifier.py"))
    p.add_argument("--per_prompt", type=int, default=st["per_prompt"])
    p.add_argument("--steps", type=int, default=st["steps"])
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--fresh", action="store_true", help="discard finished rows")
    p.add_argument("--grids", action="store_true", help="draw again the samples of finished rows that --samples lacks")
    p.add_argument("--samples", default=os.path.join("runs", f"prompts_{dataset}_samples.pt"),
                   help="every drawn sample, for the figures")
    p.add_argument("--table", action="store_true", help="print the markdown tables of the saved JSON and stop")
    p.add_argument("--figures", action="store_true", help="redraw the figures from the saved JSON and --samples, stop")
    p.add_argument("--out", default=OUT, help="results folder (default bench/results)")
    return p.parse_args(argv)


def main(dataset, argv=None):
    st = STUDIES[dataset]
    args = parse(dataset, argv)
    out = args.out
    json_path = os.path.join(out, f"prompts_{dataset}.json")
    if args.table:
        print(tables(json.load(open(json_path))))
        return
    if args.figures:
        report = json.load(open(json_path))
        spec = prompt_spec(load_saved_config(args.prompts))
        figures(report, torch.load(args.samples), out, dataset, spec, st["seen"], st["held_out"], report["per_prompt"])
        return
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    report = json.load(open(json_path)) if os.path.exists(json_path) and not args.fresh else {"results": []}
    done = {r["method"] for r in report["results"]}
    samples = torch.load(args.samples) if os.path.exists(args.samples) and not args.fresh else {}

    def save():
        os.makedirs(out, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
        os.makedirs(os.path.dirname(os.path.abspath(args.samples)), exist_ok=True)
        torch.save(samples, args.samples)

    run, cond = load_run(args.prompts), load_run(args.cond)
    sde, config = run.sde, run.config
    spec = prompt_spec(config)
    clip, _, clip_ckpt = restore_contrastive(config, args.prompts)
    sim = get_similarity_fn(sde, clip)
    ds = get_dataset(config)
    L = ds.num_levels
    judge, judge_info = get_judge(st, ds, sde, args)
    fx = get_feature_extractor(ds, ds.labels, "", FeatureSettings(epochs=st["feature_epochs"]))
    ref_feats = fx.features(ds.test)
    seen, held = st["seen"], st["held_out"]
    report.update(prompts_run=run.checkpoint, cond_run=cond.checkpoint, prompts_step=run.step, cond_step=cond.step,
                  contrastive=clip_ckpt, sampler=args.sampler, steps=args.steps, per_prompt=args.per_prompt,
                  attributes=list(spec.attributes), held_out=list(config.prompts.held_out),
                  seen=[spec.prompt(c, (a, b)) for c, a, b in seen],
                  held_out_prompts=[spec.prompt(c, (a, b)) for c, a, b in held], fd_features=fx.info.get("settings"),
                  **judge_info)

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
              [(f"clip scale={s}", dict(clip_scale=float(s))) for s in st["clip_scales"]] + \
              [("cfg w=1 + clip scale=3", dict(w=1.0, clip_scale=3.0)), ("class-conditional (reference)", None)]
    if "test split (floor)" not in done:
        row = {"method": "test split (floor)", "class_accuracy": mean_se((judge(ds.test) == ds.test_labels).double()),
               "fd_train_vs_test": frechet_distance(ref_feats, fx.features(ds.train[:ds.test.shape[0]]))}
        report["results"].append(row)
        save()
    if FLOOR not in done:
        report["results"].append(data_floor(ds, spec, seen, held, args.per_prompt, judge, fx, ref_feats))
        save()
    for name, kw in methods:
        if name in done and (not args.grids or all((name, s) in samples for s in ("seen", "held_out"))):
            continue
        row = {"method": name}
        for split, combos in (("seen", seen), ("held_out", held)):
            y, bins, tokens, group = prompts_of(combos)
            if kw is None:        # the class-conditional net, class only
                score_fn = models.get_score_fn(sde, cond.model, y=y)
            else:
                score_fn = prompt_score(tokens, **kw)
            x, nfe, sec = draw(score_fn, y.numel())
            samples[(name, split)] = x
            if name not in done:
                row[split] = scores(x, y, bins, group, judge, spec, fx.features, ref_feats)
                row[split].update(nfe=nfe, seconds=round(sec, 1))
        if name not in done:
            report["results"].append(row)
            print(name, {s: {k: v for k, v in row[s].items() if k in ("class_accuracy", "all_accuracy", "fd")}
                         for s in ("seen", "held_out")}, flush=True)
        save()
    if args.onetoken and "one-token prompts, w=0" not in done:
        onetoken_rows(args, report, samples, sde, spec, draw, judge, fx, ref_feats)
        save()
    if "cost" not in report:
        report["cost"] = cost(run.model, cond.model, sde, ds.shape, reps=st["cost_reps"])
        save()
    figures(report, samples, out, dataset, spec, seen, held, args.per_prompt)
    print(json.dumps(report["cost"]))


def data_floor(ds, spec, seen, held, k, judge, fx, ref_feats):
    """The metrics of real train images of each prompt's combination (the first k of each, in split order;
    fewer where the train split has fewer: `n` says how many)."""
    bins = attribute_bins(ds.train, spec.dataset, spec.attributes)
    row = {"method": FLOOR}
    for split, combos in (("seen", seen), ("held_out", held)):
        idx, want = [], []
        for c, a, b in combos:
            hit = ((ds.train_labels == c) & (bins[:, 0] == a) & (bins[:, 1] == b)).nonzero().flatten()[:k]
            idx.append(hit)
            want.append(torch.tensor([[a, b]]).expand(hit.numel(), 2))
        group = torch.cat([torch.full((h.numel(),), i) for i, h in enumerate(idx)])
        idx = torch.cat(idx)
        row[split] = scores(ds.train[idx], ds.train_labels[idx], torch.cat(want), group, judge, spec, fx.features,
                            ref_feats)
    return row


def onetoken_rows(args, report, samples, sde, spec, draw, judge, fx, ref_feats):
    """The one-token net (prompt = class name) at w = 0 and the class-conditional net at its step, same seeds."""
    one = load_run(args.onetoken)
    ospec = prompt_spec(one.config)
    y = torch.arange(10).repeat_interleave(args.per_prompt)
    toks = ospec.encode([ospec.class_names[k] for k in y.tolist()])
    group = y.clone()
    same = load_run(args.cond, checkpoint=one.step)      # the class-conditional net after as many steps
    for name, score_fn in (("one-token prompts, w=0", models.get_score_fn(sde, one.model, y=toks)),
                           ("class-conditional, same seeds and steps", models.get_score_fn(sde, same.model, y=y))):
        x, nfe, sec = draw(score_fn, y.numel(), seed0=1000)
        got = attribute_bins(x, spec.dataset, spec.attributes)
        m = scores(x, y, got, group, judge, spec, fx.features, ref_feats)
        for key in [k for k in m if k.endswith("_accuracy") and k != "class_accuracy"]:
            m.pop(key)            # no attributes in a one-token prompt
        report["results"].append({"method": name, "all": m})
        samples[(name, "all")] = x
    report["onetoken_run"], report["onetoken_cond_run"] = one.checkpoint, same.checkpoint


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
