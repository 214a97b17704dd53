"""The markdown tables of `bench/cold_study.py` (written beside its JSON as `<tag>.md`)."""
from __future__ import annotations

import math


def _f(m, se, d=3):
    return f"{m:.{d}f} ± {se:.{d}f}" if math.isfinite(se) else f"{m:.{d}f}"


def plan_table(res):
    """Equal wall time: measured seconds per step (median, IQR), planned steps, training wall time."""
    plan, meta = res["training_plan"], res.get("meta", {})
    trained = meta.get("training", {})
    lines = [f"Budget {plan['budget_seconds']:.1f} s ({plan['budget_rule']}); costs: {plan['measured']}.", "",
             "| model | ms / step (median) | IQR | spread | steps = budget / cost | training wall time (s) |",
             "|---|---|---|---|---|---|"]
    for name, c in plan["seconds_per_step"].items():
        wall = trained.get(name, {}).get("wall_seconds")
        lines.append(f"| {name} | {c['median'] * 1e3:.1f} | {c['q25'] * 1e3:.1f}–{c['q75'] * 1e3:.1f} | "
                     f"{c['spread']:.2f} | {plan['steps'][name]} | {'' if wall is None else f'{wall:.0f}'} |")
    return lines


def markdown(res):
    meta, g = res["meta"], res["generation"]
    lines = ["## Training plan (equal wall time)", ""] + plan_table(res) + [
        "", "## Generation", "",
        f"Data: {meta['dataset']}, {meta['n']} samples per set against the {meta['reference']}; "
        f"{len(meta['seeds'])} seeds (mean ± SE over seeds); {meta['steps']} steps; priors fitted to "
        f"{meta['prior_fit_images']} training images.", "",
        "| row | NFE | FD | KID | precision | recall | distinct / n | pair RMSE |", "|---|---|---|---|---|---|---|---|"]
    for label, r in g.items():
        lines.append(f"| {label} | {r['nfe']} | {_f(r['fd'], r['fd_stderr'], 2)} | {_f(r['kid'], r['kid_stderr'], 4)} "
                     f"| {_f(r['precision'], r['precision_stderr'], 2)} | {_f(r['recall'], r['recall_stderr'], 2)} "
                     f"| {_f(r['distinct'], r['distinct_stderr'], 1)} | {_f(r['pair_rmse'], r['pair_rmse_stderr'])} |")
    lines += ["", "## Restoration", "", "RMSE to x0 (model space [-1, 1]; mean ± SE over test images):", "",
              "| degradation | t | degraded input | direct R | Algorithm 1 | Algorithm 2 |", "|---|---|---|---|---|---|"]
    for name, per_t in res["restoration"].items():
        for t, r in per_t.items():
            cells = " | ".join(_f(r[k], r[k + "_stderr"]) for k in ("degraded input", "direct R", "Algorithm 1",
                                                                      "Algorithm 2"))
            lines.append(f"| {name} | {t} | {cells} |")
    tm = res["timing"]
    lines += ["", "## Wall time per sample", "",
              f"Hot {tm['hot_seconds_per_sample'] * 1e3:.2f} ± {tm['hot_seconds_per_sample_stderr'] * 1e3:.2f} ms, "
              f"cold {tm['cold_seconds_per_sample'] * 1e3:.2f} ± {tm['cold_seconds_per_sample_stderr'] * 1e3:.2f} ms; "
              f"ratio cold/hot {_f(tm['ratio_cold_over_hot'], tm['ratio_cold_over_hot_stderr'])} ({tm['note']})."]
    return "\n".join(lines) + "\n"
