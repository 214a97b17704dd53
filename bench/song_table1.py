"""Benchmark: Song et al. (2021), Table 1, reproduced in kind on 8x8 digits, VE and VP.

The paper compares, on CIFAR-10 (FID of 50k samples), three predictors (ancestral sampling,
reverse diffusion, probability flow) run alone with 1000 and 2000 steps (P1000, P2000), with one
Langevin corrector step per predictor step (PC1000, 2000 NFE), and the corrector alone at 2000
noise levels (C2000). Here each of those ten samplers is a `--mode compare` variant entry
(e.g. `pc(predictor=probability_flow, corrector=langevin, snr=0.16, steps=1000)`), run on a
trained digits model with 3 seeds x all 359 test-split-sized samples, and scored by the study's
metrics (Frechet distance in the feature space of a CNN classifier trained on digits, KID,
precision/recall, ...) with standard errors over seeds, beside the study's reference rows
(train split vs test split: the floor; a Gaussian fitted to the train split).

What differs from the paper, on purpose or by necessity:
- data and metric: 8x8 digits (17 levels) and FD in a digits-classifier feature space, not
  CIFAR-10 and Inception FID; only orderings are comparable, never values;
- the Langevin step: `langevin_norm="kernel"` (this project's default, r = s(t); see
  `solvers/correctors.py`) instead of the reference's batch-averaged norm, which would make a
  sample depend on its batch-mates; snr = 0.16 for both SDEs (the reference code's default);
- a final Tweedie denoising step (`sampling.denoise`, +1 NFE), as the reference's noise removal.

Usage (each `--sde` part is resumable cell by cell and can run in its own process):

    python run.py --config configs/digits_ve_ncsnpp.py --workdir runs/ve --mode train
    python run.py --config configs/digits_vp_ddpmpp.py --workdir runs/vp --mode train
    python bench/song_table1.py --sde ve --workdir runs/ve
    python bench/song_table1.py --sde vp --workdir runs/vp
    python bench/song_table1.py --table ve=runs/ve vp=runs/vp
    -> bench/results/song_table1.json, .md, .png, song_table1_grids.png
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OUT = os.path.join(ROOT, "bench", "results")
SNR = 0.16
PREDICTORS = {"ancestral sampling": "ancestral", "reverse diffusion": "reverse_diffusion",
              "probability flow": "probability_flow"}
COLUMNS = ("P1000", "P2000", "C2000", "PC1000")

# Song et al. (2021), Table 1: CIFAR-10 FID (mean +- std over 5 sampling runs), as printed.
PAPER = {
    "ve": {("ancestral sampling", "P1000"): (4.98, .06), ("ancestral sampling", "P2000"): (4.88, .06),
           ("ancestral sampling", "PC1000"): (3.62, .03), ("reverse diffusion", "P1000"): (4.79, .07),
           ("reverse diffusion", "P2000"): (4.74, .08), ("reverse diffusion", "PC1000"): (3.60, .02),
           ("probability flow", "P1000"): (15.41, .15), ("probability flow", "P2000"): (10.54, .08),
           ("probability flow", "PC1000"): (3.51, .04), ("corrector only", "C2000"): (20.43, .07)},
    "vp": {("ancestral sampling", "P1000"): (3.24, .02), ("ancestral sampling", "P2000"): (3.24, .02),
           ("ancestral sampling", "PC1000"): (3.21, .02), ("reverse diffusion", "P1000"): (3.21, .02),
           ("reverse diffusion", "P2000"): (3.19, .02), ("reverse diffusion", "PC1000"): (3.18, .01),
           ("probability flow", "P1000"): (3.59, .04), ("probability flow", "P2000"): (3.23, .03),
           ("probability flow", "PC1000"): (3.06, .03), ("corrector only", "C2000"): (19.06, .06)},
}


def entries():
    """{(row, column): compare variant entry} for the ten cells of one SDE."""
    out = {}
    for row, pred in PREDICTORS.items():
        for steps, col in ((1000, "P1000"), (2000, "P2000")):
            out[(row, col)] = f"pc(predictor={pred}, corrector=none, steps={steps})"
        out[(row, "PC1000")] = f"pc(predictor={pred}, corrector=langevin, snr={SNR}, steps=1000)"
    out[("corrector only", "C2000")] = f"pc(predictor=none, corrector=langevin, snr={SNR}, steps=2000)"
    return out


def study_args(workdir, seeds, num_samples, threads):
    names = tuple(entries().values())
    return ["--workdir", workdir, "--mode", "compare", f"--config.compare.samplers={names!r}",
            "--config.compare.nfe=(1000,)", f"--config.compare.seeds={tuple(seeds)!r}",
            f"--config.compare.num_samples={num_samples}", f"--config.training.num_threads={threads}"]


def find_report(workdir):
    """The newest compare.json in `workdir` whose samplers are exactly this table's ten entries."""
    want = sorted(entries().values())
    found = [p for p in glob.glob(os.path.join(workdir, "compare", "*", "compare.json"))
             if sorted(json.load(open(p))["samplers"]) == want]
    if not found:
        raise SystemExit(f"error: no finished Table-1 study in {workdir!r}; run "
                         f"`python bench/song_table1.py --sde <ve|vp> --workdir {workdir}` first")
    return max(found, key=os.path.getmtime)


def _rank(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    for pos, i in enumerate(order):
        r[i] = float(pos)
    return r


def spearman(a, b):
    ra, rb = _rank(a), _rank(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def pairs(cells, metric):
    """Pairwise orderings the paper resolves (its two FIDs differ by > 2 SE of the difference):
    which this table resolves the same way, the other way, or not at all. Ours are paired
    comparisons: every cell draws sample i of seed s from the same noise (per-sample seeds shared
    across samplers), so the difference is taken seed by seed and its SE is that of the per-seed
    differences (3 seeds: a loose criterion, t with 2 degrees of freedom)."""
    agree, disagree, unresolved = [], [], []
    keys = list(cells)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            pa, pb = cells[a]["paper"], cells[b]["paper"]
            if not abs(pa[0] - pb[0]) > 2 * math.hypot(pa[1], pb[1]):
                continue
            seeds = sorted(set(cells[a]["per_seed"]) & set(cells[b]["per_seed"]))
            d = [cells[a]["per_seed"][s] - cells[b]["per_seed"][s] for s in seeds]
            mean = sum(d) / len(d)
            se = math.sqrt(sum((v - mean) ** 2 for v in d) / (len(d) - 1) / len(d)) if len(d) > 1 else float("inf")
            name = f"{a[0]} {a[1]} vs {b[0]} {b[1]}"
            if not abs(mean) > 2 * se:
                unresolved.append(name)
            elif (pa[0] < pb[0]) == (mean < 0):
                agree.append(name)
            else:
                disagree.append(name)
    return agree, disagree, unresolved


def collect(workdirs, metric):
    out = {}
    for sde, wd in workdirs.items():
        report = json.load(open(find_report(wd)))
        aggs = {(a["score"], a["sampler"]): a for a in report["aggregates"]}
        cells = {}
        for key, entry in entries().items():
            a = aggs[("model", entry)]
            per_seed = {r["seed"]: r[metric] for r in report["rows"] if r["score"] == "model" and r["sampler"] == entry}
            cells[key] = {"entry": entry, "nfe": a["nfe"], "seconds": a["seconds"], "seeds": a["seeds"],
                          "paper": PAPER[sde][key], "per_seed": per_seed,
                          **{k: a[k] for k in a if k.split("_se")[0] in report["metric_names"]}}
        refs = {name: {k: v for k, v in aggs[("reference", name)].items() if k.split("_se")[0] in report["metric_names"]}
                for name in ("floor", "gaussian")}
        agree, disagree, unresolved = pairs(cells, metric)
        keys = list(cells)
        out[sde] = {"workdir": wd, "report": find_report(wd), "step": report["step"], "n": report["num_samples"],
                    "seeds": report["seeds"], "features": report["features"], "references": refs,
                    "cells": {f"{r} | {c}": v for (r, c), v in cells.items()},
                    "spearman_vs_paper": spearman([cells[k][metric] for k in keys],
                                                  [cells[k]["paper"][0] for k in keys]),
                    "pairs_agree": agree, "pairs_disagree": disagree, "pairs_unresolved": unresolved}
    return out


def markdown(result, metric):
    lines = []
    for sde, r in result.items():
        title = {"ve": "VE SDE (SMLD)", "vp": "VP SDE (DDPM)"}[sde]
        lines += [f"**{title}**, digits model at step {r['step']}, {r['n']} samples x {len(r['seeds'])} seeds; "
                  f"feature-space FD (mean ± SE over seeds) / paper's CIFAR-10 FID:", "",
                  "| predictor | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        for row in list(PREDICTORS) + ["corrector only"]:
            cells = []
            for col in COLUMNS:
                c = r["cells"].get(f"{row} | {col}")
                cells.append("" if c is None else
                             f"{c[metric]:.2f} ± {c[metric + '_se']:.2f} / {c['paper'][0]:.2f}")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        f, g = r["references"]["floor"], r["references"]["gaussian"]
        lines += ["", f"References (same metric and size): train vs test floor {f[metric]:.2f} ± "
                  f"{f[metric + '_se']:.2f}; Gaussian fitted to train {g[metric]:.2f} ± {g[metric + '_se']:.2f}. "
                  f"Spearman rank correlation with the paper over the ten cells: {r['spearman_vs_paper']:.2f}. "
                  f"Of the {len(r['pairs_agree']) + len(r['pairs_disagree']) + len(r['pairs_unresolved'])} pairs "
                  f"the paper separates (> 2 SE), here (paired over seeds, > 2 SE): {len(r['pairs_agree'])} "
                  f"agree, {len(r['pairs_disagree'])} disagree, {len(r['pairs_unresolved'])} unresolved.", ""]
        for kind in ("agree", "disagree"):
            if r[f"pairs_{kind}"]:
                lines += [f"Pairs that {kind}: " + "; ".join(r[f"pairs_{kind}"]) + ".", ""]
        lines += ["| cell | NFE | FD | KID x1e3 | precision | recall | density | coverage | label TV |",
                  "|---|---|---|---|---|---|---|---|---|"]
        rows = [(k.replace(" | ", " "), c) for k, c in r["cells"].items()]
        rows += [(f"reference: {n}", v) for n, v in r["references"].items()]
        for name, c in rows:
            nfe = f"{c['nfe']:.0f}" if "nfe" in c else "—"

            def f(k, scale=1.0):
                return f"{c[k] * scale:.2f} ± {c[k + '_se'] * scale:.2f}" if k in c else ""
            lines.append(f"| {name} | {nfe} | {f('fd')} | {f('kid', 1e3)} | {f('precision')} | {f('recall')} | "
                         f"{f('density')} | {f('coverage')} | {f('label_tv')} |")
        lines.append("")
    return "\n".join(lines)


def plot(result, metric, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(result), figsize=(5.5 * len(result), 4.4), squeeze=False)
    marks = {"P1000": "o", "P2000": "s", "PC1000": "^", "C2000": "X"}
    colours = {"ancestral sampling": "C0", "reverse diffusion": "C1", "probability flow": "C2",
               "corrector only": "C3"}
    for ax, (sde, r) in zip(axes[0], result.items()):
        for key, c in r["cells"].items():
            row, col = key.split(" | ")
            ax.errorbar(c["paper"][0], c[metric], xerr=c["paper"][1], yerr=c[metric + "_se"], fmt=marks[col],
                        color=colours[row], label=key, capsize=2)
        for name, style in (("floor", "k:"), ("gaussian", "k--")):
            ax.axhline(r["references"][name][metric], color="k", linestyle=style[1:], lw=0.8,
                       label=f"{name} (reference)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("paper: CIFAR-10 FID")
        ax.set_ylabel(f"here: digits feature FD ({len(r['seeds'])} seeds, ± SE)")
        ax.set_title(f"{sde.upper()} SDE, Spearman {r['spearman_vs_paper']:.2f}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grids(result, path):
    """One panel per cell (the first seed's 64 samples, as the study saved them), one row per SDE."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from runner.compare_plan import slug
    keys = list(entries())
    fig, axes = plt.subplots(len(result), len(keys), figsize=(1.9 * len(keys), 2.3 * len(result)), squeeze=False)
    for row, (sde, r) in enumerate(result.items()):
        grid_dir = os.path.join(os.path.dirname(r["report"]), "compare_grids")
        for col, key in enumerate(keys):
            ax = axes[row, col]
            ax.axis("off")
            found = sorted(glob.glob(os.path.join(grid_dir, f"model_{slug(entries()[key])}_*_*.png")))
            if found:
                ax.imshow(plt.imread(found[-1]), cmap="gray")
            c = r["cells"][f"{key[0]} | {key[1]}"]
            ax.set_title(f"{sde.upper()} {key[0].split()[0]} {key[1]}\nFD {c['fd']:.2f}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sde", choices=("ve", "vp"), help="run (or resume) the ten cells of this SDE")
    p.add_argument("--workdir", help="trained model's workdir for --sde")
    p.add_argument("--table", nargs="+", metavar="SDE=WORKDIR", help="collect finished studies into the table")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num_samples", type=int, default=1000, help="capped by the test split (digits: 359)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--metric", default="fd")
    p.add_argument("--out", default=OUT)
    a = p.parse_args(argv)
    if bool(a.sde) == bool(a.table) or bool(a.sde) != bool(a.workdir):
        p.error("give either --sde and --workdir (run a study) or --table ve=DIR vp=DIR (collect)")
    if a.sde:
        import run
        return run.main(study_args(a.workdir, a.seeds, a.num_samples, a.threads))
    workdirs = {}
    for item in a.table:
        sde, _, wd = item.partition("=")
        if sde not in ("ve", "vp") or not wd:
            p.error(f"--table entries look like ve=runs/ve, got {item!r}")
        workdirs[sde] = wd
    result = collect(workdirs, a.metric)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "song_table1.json"), "w") as f:
        json.dump({"metric": a.metric, "snr": SNR, "paper": "Song et al. 2021, Table 1 (CIFAR-10 FID)",
                   "result": result}, f, indent=1)
    text = markdown(result, a.metric)
    with open(os.path.join(a.out, "song_table1.md"), "w") as f:
        f.write(text)
    plot(result, a.metric, os.path.join(a.out, "song_table1.png"))
    grids(result, os.path.join(a.out, "song_table1_grids.png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
