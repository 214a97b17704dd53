"""Run-to-run spread of the prompt study: the same study (`bench/prompts_study.py`) on prompt nets trained
with different seeds, every metric as the mean over seeds with the SE over seeds beside the mean of the
per-run (sampling) SEs. Only the prompt net's training seed changes between runs; the class-conditional
net, the contrastive model (copied into each run's `contrastive/`) and the judge are the same in every
run, so their rows' spread is the sampling spread alone.

    # per seed s: train a prompt net, give it the seed-0 contrastive model, run the study into its own folder
    python run.py --config configs/digits_prompts_vp_ddpmpp.py --workdir runs/prompts_s1 --mode train \\
        --config.training.n_iters=2000 --config.seed=1
    cp -r runs/prompts/contrastive runs/prompts_s1/
    python bench/prompts_digits.py --prompts runs/prompts_s1 --cond runs/cond --out runs/seeds/s1
    # then
    python bench/prompts_seeds.py bench/results/prompts_digits.json runs/seeds/s1/prompts_digits.json \\
        runs/seeds/s2/prompts_digits.json --out bench/results/prompts_digits_seeds.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import mean_se, save  # noqa: E402

METRICS = ("all_accuracy", "class_accuracy", "fd", "diversity")


def aggregate(runs):
    """{method: {split: {metric: {mean, se_over_seeds, mean_sampling_se, per_seed}}}} over result dicts."""
    out = {}
    for row in runs[0]["results"]:
        method = row["method"]
        rows = [next((r for r in run["results"] if r["method"] == method), None) for run in runs]
        if any(r is None for r in rows):
            continue
        for split in ("seen", "held_out"):
            if split not in row:
                continue
            for metric in METRICS:
                if metric not in row[split]:
                    continue
                vals = [r[split][metric][0] for r in rows]
                m, se = mean_se(vals)
                out.setdefault(method, {}).setdefault(split, {})[metric] = {
                    "mean": m, "se_over_seeds": se, "per_seed": vals,
                    "mean_sampling_se": sum(r[split][metric][1] for r in rows) / len(rows)}
    return out


def table(agg, split="seen"):
    lines = [f"| method ({split}) | all three right | SE over seeds | mean sampling SE | FD | SE over seeds |",
             "|---|---|---|---|---|---|"]
    for method, splits in agg.items():
        if split not in splits:
            continue
        a, f = splits[split]["all_accuracy"], splits[split]["fd"]
        lines.append(f"| {method} | {a['mean']:.3f} | {a['se_over_seeds']:.3f} | {a['mean_sampling_se']:.3f} | "
                     f"{f['mean']:.2f} | {f['se_over_seeds']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="prompts_<data>.json of each seed's study (2 or more)")
    p.add_argument("--out", required=True, help="JSON to write (the aggregate)")
    a = p.parse_args(argv)
    if len(a.results) < 2:
        p.error(f"need the results of 2 or more seeds, got {len(a.results)}")
    for path in a.results:
        if not os.path.isfile(path):
            p.error(f"no results file {path!r}")
    runs = [json.load(open(path)) for path in a.results]
    nets = [r.get("prompts_run") for r in runs]
    agg = aggregate(runs)
    res = {"runs": a.results, "prompt_nets": nets, "seeds": len(runs), "metrics": agg,
           "what": "mean over prompt nets trained with different seeds; se_over_seeds = std / sqrt(k); "
                   "mean_sampling_se = the average of each run's own SE over samples"}
    save(a.out, res)
    print(table(agg, "seen"))
    print()
    print(table(agg, "held_out"))
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
