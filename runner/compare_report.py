"""Aggregates, the paper table (compare.md), the figure (compare.png) and sample grids of a study."""
from __future__ import annotations

import json
import math
import os

from evaluation.metrics import METRICS as METRIC_TABLE
from training.data import model_to_uint8

from .common import json_safe
from .compare_plan import grid_file, slug
from .figures import save_image_grid, save_scatter

METRICS = tuple(METRIC_TABLE)
NAMES = {k: m.title for k, m in METRIC_TABLE.items()}


def _mean_se(values):
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return m, sd / math.sqrt(len(v))


def aggregate(rows):
    """One entry per (score, sampler, budget): mean and standard error over seeds of every metric.
    Seeds whose samples are not finite are left out of the means and counted in `non_finite`."""
    groups = {}
    for r in rows:
        groups.setdefault((r["score"], r["sampler"], r["label"]), []).append(r)
    out = []
    for (score, sampler, label), rs in groups.items():
        ok = [r for r in rs if r.get("finite", False)]
        a = {"score": score, "sampler": sampler, "label": label, "seeds": len(rs), "non_finite": len(rs) - len(ok)}
        for k in ("nfe_budget", "steps", "tol"):
            if k in rs[0]:
                a[k] = rs[0][k]
        for k in ("nfe", "seconds") + METRICS:
            if any(k in r for r in ok):
                a[k], a[k + "_se"] = _mean_se(r.get(k) for r in ok)
        out.append(a)
    return out


def _z(a, b, k):
    """(b - a) in units of the standard error of the difference of two independent means."""
    se = math.hypot(a.get(k + "_se", float("nan")), b.get(k + "_se", float("nan")))
    return (b[k] - a[k]) / se if se > 0 else float("nan")


def resolution(aggs, primary, max_nfe=20):
    """How well the primary metric resolves the study: the best model row, the floor and the Gaussian
    compared in SE units of their difference (oriented so that positive = the first is better), and,
    at every NFE budget <= max_nfe, how many sampler pairs differ by more than 2 SE."""
    sign = 1.0 if METRIC_TABLE[primary].lower_is_better else -1.0
    ok = [a for a in aggs if math.isfinite(a.get(primary, math.nan))]
    ref = {a["sampler"]: a for a in ok if a["score"] == "reference"}
    model = [a for a in ok if a["score"] == "model"]
    out = {"metric": primary}
    if model:
        best = min(model, key=lambda a: sign * a[primary])
        out["best"] = {"sampler": best["sampler"], "label": best["label"], "value": best[primary],
                       "se": best.get(primary + "_se")}
        if "gaussian" in ref:
            out["gaussian_minus_best_in_se"] = sign * _z(best, ref["gaussian"], primary)
    if "gaussian" in ref and "floor" in ref:
        out["gaussian_minus_floor_in_se"] = sign * _z(ref["floor"], ref["gaussian"], primary)
    pairs = {}
    for b in sorted({a["nfe_budget"] for a in model if "nfe_budget" in a and a["nfe_budget"] <= max_nfe}):
        col = [a for a in model if a.get("nfe_budget") == b]
        zs = [abs(_z(x, y, primary)) for i, x in enumerate(col) for y in col[i + 1:]]
        pairs[str(b)] = {"pairs": len(zs), "separated_by_2se": sum(z > 2 for z in zs)}
    out["pairs_at_low_nfe"] = pairs
    return out


def _fmt(a, k, digits=3):
    if k not in a or not math.isfinite(a[k]):
        return "—"
    m, se = a[k], a.get(k + "_se", float("nan"))
    return f"{m:.{digits}f} ± {se:.{digits}f}" if math.isfinite(se) else f"{m:.{digits}f}"


def markdown(aggs, meta):
    """compare.md: the primary metric by sampler x NFE budget (best per column in bold), then all metrics."""
    p = meta["primary_metric"]
    lower = METRIC_TABLE[p].lower_is_better
    feats = meta["features"]
    acc = f", test accuracy {feats['test_accuracy']:.4f}" if "test_accuracy" in feats else ""
    lines = [f"# Sampler study: {meta['dataset']}, {meta['num_samples']} samples per row, "
             f"{len(meta['seeds'])} seeds (mean ± standard error over seeds)", "",
             f"Reference set: {meta['reference']}. Features: {feats.get('kind')}{acc}. "
             f"Checkpoint step {meta['step']} (EMA: {meta['use_ema']}), final denoising step: {meta['denoise']}. "
             f"NFE counts every score evaluation.", ""]
    refs = [a for a in aggs if a["score"] == "reference"]
    lines += [f"**{NAMES[p]}** ({'lower' if lower else 'higher'} is better). Reference rows: " +
              "; ".join(f"{a['sampler']} {_fmt(a, p)}" for a in refs) + ".", ""]
    res = resolution(aggs, p)
    if "gaussian_minus_best_in_se" in res:
        lines += [f"Resolution: the Gaussian is {res['gaussian_minus_best_in_se']:.1f} SE worse than the best "
                  f"sampler row ({res['best']['sampler']}, {res['best']['label']}); the floor is "
                  f"{res.get('gaussian_minus_floor_in_se', float('nan')):.1f} SE better than the Gaussian (SE of "
                  "the difference). Sampler pairs separated by > 2 SE: " +
                  ", ".join(f"NFE {b}: {v['separated_by_2se']}/{v['pairs']}" for b, v in res["pairs_at_low_nfe"].items())
                  + ".", ""]
    fixed = [a for a in aggs if a["score"] != "reference" and "nfe_budget" in a]
    ladder = sorted({a["nfe_budget"] for a in fixed})
    if ladder:
        lines += ["| score | sampler | " + " | ".join(f"NFE {b}" for b in ladder) + " |",
                  "|---|---|" + "---|" * len(ladder)]
        best = {}
        for b in ladder:
            col = [a for a in fixed if a["nfe_budget"] == b and a["score"] == "model" and math.isfinite(a.get(p, math.nan))]
            if col:
                best[b] = (min if lower else max)(col, key=lambda a: a[p])
        rowkeys = []
        for a in fixed:
            if (a["score"], a["sampler"]) not in rowkeys:
                rowkeys.append((a["score"], a["sampler"]))
        for score, sampler in rowkeys:
            cells = []
            for b in ladder:
                a = next((x for x in fixed if (x["score"], x["sampler"], x["nfe_budget"]) == (score, sampler, b)), None)
                text = "—" if a is None else _fmt(a, p)
                cells.append(f"**{text}**" if a is not None and best.get(b) is a else text)
            lines.append(f"| {score} | {sampler} | " + " | ".join(cells) + " |")
        lines += ["", "A sampler whose NFE per step exceeds a budget runs its nearest step count (see the NFE "
                  "column below); adaptive samplers run at tolerances and appear in the full table.", ""]
    present = [k for k in METRICS if any(k in a for a in aggs)]
    lines += ["## All metrics", "",
              "| score | sampler | budget | NFE | " + " | ".join(NAMES[k] for k in present) + " | seconds |",
              "|---|---|---|---|" + "---|" * (len(present) + 1)]
    for a in aggs:
        nfe = "—" if a["score"] == "reference" else f"{a.get('nfe', float('nan')):.0f}"
        bad = f" ({a['non_finite']} non-finite)" if a["non_finite"] else ""
        lines.append(f"| {a['score']} | {a['sampler']}{bad} | {a['label']} | {nfe} | " +
                     " | ".join(_fmt(a, k) for k in present) + f" | {a.get('seconds', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def plot(aggs, meta, path):
    """compare.png: one panel per metric against NFE (log x), error bars = SE over seeds; the
    reference rows as horizontal lines with their ±SE band; exact-score runs dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    present = [k for k in METRICS if any(k in a for a in aggs)]
    cols = 3
    rows_n = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.6 * rows_n), squeeze=False)
    curves = {}
    for a in aggs:
        if a["score"] != "reference":
            curves.setdefault((a["score"], a["sampler"]), []).append(a)
    samplers = list(dict.fromkeys(sampler for _, sampler in curves))
    palette = plt.get_cmap("tab10" if len(samplers) <= 10 else "tab20")
    colours = {name: palette(i % palette.N) for i, name in enumerate(samplers)}   # one distinct colour each
    for ax, k in zip(axes.flat, present):
        for (score, sampler), rs in curves.items():
            rs = sorted((a for a in rs if k in a and math.isfinite(a[k])), key=lambda a: a["nfe"])
            if not rs:
                continue
            colour = colours[sampler]
            ax.errorbar([a["nfe"] for a in rs], [a[k] for a in rs], yerr=[a.get(k + "_se", 0) for a in rs],
                        color=colour, marker="o", markersize=3, capsize=2, linestyle="-" if score == "model" else "--",
                        label=sampler if score == "model" else f"{sampler} (exact score)")
        for a, style in zip([a for a in aggs if a["score"] == "reference" and k in a], ("k", "0.5")):
            ax.axhline(a[k], color=style, linestyle=":", label=f"{a['sampler']} (reference)")
            se = a.get(k + "_se", float("nan"))
            if math.isfinite(se):
                ax.axhspan(a[k] - se, a[k] + se, color=style, alpha=0.15)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("NFE")
        ax.set_title(NAMES[k])
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
    fig.suptitle(f"{meta['dataset']}: {meta['num_samples']} samples, mean ± SE over {len(meta['seeds'])} seeds")
    fig.tight_layout(rect=(0, 0.04 + 0.02 * math.ceil(len(labels) / 6), 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_cell_grid(x, ds, path, count=64):
    """The first `count` samples of a cell: an image grid, or a scatter against the test split."""
    if ds.is_image:
            save_image_grid(model_to_uint8(x[:count]), path)
    else:
        save_scatter(x[:2000, :2].numpy(), ds.test[:2000, :2].numpy(), path)


def compose_grids(rows, aggs, grid_dir):
    """compare_grids/<score>_<sampler>.png: a sampler's 2-3 budget grids side by side, titled with NFE
    (the grids of the first seed's cells of this study: rows carrying `grid`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    nfe = {(a["score"], a["sampler"], a["label"]): a.get("nfe", float("nan")) for a in aggs}
    groups = {}
    for r in rows:
        f = os.path.join(grid_dir, grid_file(r))
        if r.get("grid") and os.path.exists(f):
            groups.setdefault((r["score"], r["sampler"]), []).append((r, f))
    for (score, sampler), items in groups.items():
        out = os.path.join(grid_dir, f"{score}_{slug(sampler)}.png")
        if os.path.exists(out) and os.path.getmtime(out) >= max(os.path.getmtime(f) for _, f in items):
            continue                                     # resumed study: this composite is up to date
        fig, axes = plt.subplots(1, len(items), figsize=(3.2 * len(items), 3.5), squeeze=False)
        for ax, (a, f) in zip(axes[0], items):
            ax.imshow(plt.imread(f), cmap="gray")
            n = "" if a["score"] == "reference" else f", NFE {nfe[(a['score'], a['sampler'], a['label'])]:.0f}"
            ax.set_title(f"{a['label']}{n}", fontsize=9)
            ax.axis("off")
        fig.suptitle(f"{sampler} ({score})", fontsize=10)
        fig.tight_layout()
        fig.savefig(out, dpi=90)
        plt.close(fig)


def write_all(rows, meta, paths):
    aggs = aggregate(rows)
    report = {**meta, "metric_names": NAMES, "resolution": resolution(aggs, meta["primary_metric"]),
              "aggregates": aggs, "rows": rows}
    with open(paths["json"], "w") as f:
        json.dump(json_safe(report), f, indent=1)
    with open(paths["md"], "w") as f:
        f.write(markdown(aggs, meta))
    plot(aggs, meta, paths["png"])
    compose_grids(rows, aggs, paths["grids"])
    return report
