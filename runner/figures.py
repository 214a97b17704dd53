"""Figures written by the modes: image grids, scatter plots, the training-loss plot (the compare
study draws its own in runner/compare_report.py)."""
from __future__ import annotations

import math


def save_image_grid(images_uint8, path: str, scale: int = 0, cols: int = 0) -> None:
    """uint8 `[N, C, H, W]` -> one PNG grid (`cols` columns, default ceil(sqrt N); 1-pixel gaps),
    upscaled to >= 256 px."""
    import numpy as np
    from PIL import Image
    x = images_uint8.numpy() if hasattr(images_uint8, "numpy") else images_uint8
    n, c, h, w = x.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i].transpose(1, 2, 0)
    img = Image.fromarray(grid[:, :, 0] if c == 1 else grid)
    scale = scale or max(1, 256 // max(grid.shape[:2]) + 1)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def save_scatter(samples, data, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    for ax, pts, title in ((axes[0], data, "data (test split)"), (axes[1], samples, "samples")):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_loss_plot(metrics_path: str, path: str) -> None:
    """Training loss (and held-out loss with its standard error, if logged) against step."""
    import json
    import os
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not os.path.exists(metrics_path):
        return
    rows = []
    for line in open(metrics_path):
        try:
            rows.append(json.loads(line))
        except ValueError:          # a line cut short by a killed process
            continue
    train = sorted({r["step"]: r["loss"] for r in rows if "loss" in r}.items())
    held = sorted({r["step"]: (r["eval_loss"], r["eval_loss_stderr"]) for r in rows if "eval_loss" in r}.items())
    if not train and not held:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], label="training loss (mean over log_freq steps)")
    if held:
        ax.errorbar([s for s, _ in held], [v for _, (v, _) in held], yerr=[e for _, (_, e) in held],
                    marker="o", capsize=2, label="held-out DSM loss, EMA model (+- 1 s.e.)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("DSM loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
