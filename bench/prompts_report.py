"""Tables and figures of the prompt-adherence study (bench/prompts_study.py) from its JSON and samples:
the markdown tables of docs/bench/prompts-*.md, the adherence / FD plot, one panel of samples per
method and split, and one grid per prompt (a row of samples per prompt, a block of columns per method).
"""
from __future__ import annotations

import os

import torch


def _f(v, digits=3):
    return "-" if v is None else f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}" if v[1] is not None else f"{v[0]:.{digits}f}"


def tables(report):
    """The docs' tables from the saved JSON."""
    attrs = report.get("attributes", ["thickness", "slant"])
    head = (f"| method | split | class acc. | {' acc. | '.join(attrs)} acc. | all three | diversity | FD | n | s |\n"
            f"|---|---|---|{'---|' * len(attrs)}---|---|---|---|---|")
    lines = [head]
    for r in report["results"]:
        for split in ("seen", "held_out", "all"):
            if split in r:
                m = r[split]
                cells = " | ".join(_f(m.get(f"{a}_accuracy")) for a in attrs)
                lines.append(f"| {r['method']} | {split} | {_f(m['class_accuracy'])} | {cells} | "
                             f"{_f(m.get('all_accuracy'))} | {_f(m['diversity'], 2)} | {_f(m['fd'], 2)} | "
                             f"{m.get('n', '-')} | {m.get('seconds', '-')} |")
        if "fd_train_vs_test" in r:
            ones = " | ".join("1 (by definition)" for _ in attrs)
            lines.append(f"| {r['method']} | test | {_f(r['class_accuracy'])} | {ones} | - | - | "
                         f"{r['fd_train_vs_test']:.2f} (train vs test) | - | - |")
    c = report.get("cost")
    if c:
        lines += ["", "| net | parameters | seconds per score call (batch 64) |", "|---|---|---|",
                  f"| prompt net (text encoder {c['params_text_encoder']:,}) | {c['params_prompt_net']:,} | "
                  f"{_f(c['seconds_prompt_net'], 4)} |",
                  f"| class-conditional | {c['params_class_conditional']:,} | {_f(c['seconds_class_conditional'], 4)} |",
                  f"| ratio (alternate calls, {c['reps']} pairs) | {c['params_prompt_net'] / c['params_class_conditional']:.2f} | "
                  f"{_f(c['time_ratio'], 2)} |"]
    return "\n".join(lines)


def _tile(x, cols, pad=1):
    """Images `[n, C, H, W]` in [-1, 1] -> one gray canvas with `cols` columns (white gaps)."""
    n, _, H, W = x.shape
    rows = (n + cols - 1) // cols
    img = torch.ones(rows * (H + pad), cols * (W + pad))
    for i in range(n):
        r, c = divmod(i, cols)
        img[r * (H + pad):r * (H + pad) + H, c * (W + pad):c * (W + pad) + W] = (x[i].mean(0) + 1) / 2
    return img


def figures(report, samples, out, dataset, spec, seen, held, per_prompt, per_cell=5):
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
    for ax, title in zip(axes, ("prompt adherence (class and both attributes right), ± 2 SE", "FD to the test split")):
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r["method"] for r in rows], rotation=35, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"prompts_{dataset}.png"), dpi=110)
    plt.close(fig)
    if not samples:
        return
    keys = list(samples)
    H = samples[keys[0]].shape[-1]
    if H <= 8:       # small images: also one panel per method and split (larger ones: the prompt grid only)
        fig, axes = plt.subplots(1, len(keys), figsize=(2.2 * len(keys), 3))
        for ax, key in zip(axes if len(keys) > 1 else [axes], keys):
            x = samples[key][::max(1, samples[key].shape[0] // 40)][:40]
            ax.imshow(_tile(x, 5), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"{key[0]}\n{key[1]}", fontsize=6)
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"prompts_{dataset}_grids.png"), dpi=110)
        plt.close(fig)
    prompt_grid(samples, os.path.join(out, f"prompts_{dataset}_prompt_grid.png"), spec, seen, held, per_prompt, per_cell)


def prompt_grid(samples, path, spec, seen, held, per_prompt, per_cell=5):
    """One row per prompt (seen, then held out), the first `per_cell` samples of each method side by side."""
    import matplotlib.pyplot as plt
    methods = [m for m in dict.fromkeys(k[0] for k in samples) if (m, "seen") in samples and (m, "held_out") in samples]
    if not methods:
        return
    prompts = [(spec.prompt(c, (a, b)), "seen", i) for i, (c, a, b) in enumerate(seen)] + \
              [(spec.prompt(c, (a, b)), "held_out", i) for i, (c, a, b) in enumerate(held)]
    H, W = samples[(methods[0], "seen")].shape[-2:]
    k = min(per_cell, per_prompt)
    gap = max(2, W // 3)
    canvas = torch.ones(len(prompts) * (H + 1), len(methods) * (k * (W + 1) + gap))
    for j, m in enumerate(methods):
        for r, (_, split, i) in enumerate(prompts):
            x = samples[(m, split)][i * per_prompt:i * per_prompt + k]
            tile = _tile(x, k)[:H + 1]
            c0 = j * (k * (W + 1) + gap)
            canvas[r * (H + 1):r * (H + 1) + tile.shape[0], c0:c0 + tile.shape[1]] = tile
    dpi, px = 100, -(-48 // (H + 1))          # whole output pixels per image pixel, images about 48 px high
    inch = px / dpi
    fig, ax = plt.subplots(figsize=(3.2 + inch * canvas.shape[1], 1.4 + inch * canvas.shape[0]))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([(r + 0.5) * (H + 1) for r in range(len(prompts))])
    ax.set_yticklabels([f"{p}{' (held out)' if s == 'held_out' else ''}" for p, s, _ in prompts], fontsize=7)
    ax.set_xticks([(j + 0.5) * (k * (W + 1) + gap) for j in range(len(methods))])
    ax.set_xticklabels(methods, fontsize=7, rotation=25, ha="left")
    ax.xaxis.tick_top()
    for s in ax.spines.values():
        s.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
