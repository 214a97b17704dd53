"""Training throughput: steps/s of `training.train` vs a bare PyTorch loop on the same
model, batch and loss, and (with --demo) the wall time of `python run.py`.

The bare loop is the minimum any implementation pays per step: draw a batch, the
continuous DSM loss, backward, Adam. `train()` adds the LR warm-up, the finiteness
checks (one .item() sync), gradient clipping, the EMA update, metrics, the tqdm bar
and checkpoints (at the config's snapshot_freq). Both run in this process with the
same thread count, alternating, and report the medians of `--repeats` runs and
the ratio of the medians.

    python bench/train_throughput.py [--config configs/default.py] [--steps 200] [--threads 2] [--demo]

Writes bench/results/train_throughput.json and train_throughput.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import run  # noqa: E402
import sde_lib  # noqa: E402
from models import get_model, get_score_fn  # noqa: E402
from training import get_dataset, get_loss_fn, train  # noqa: E402


def bare_loop(config, dataset, steps: int) -> float:
    """Steps/s of the minimal loop."""
    sde = sde_lib.get_sde(config)
    torch.manual_seed(config.seed)
    model = get_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.training.lr, foreach=True)
    score_fn = get_score_fn(sde, model, train=True)
    loss_fn = get_loss_fn(sde)
    g = torch.Generator().manual_seed(0)
    data, B = dataset.train, config.training.batch_size
    t0 = None
    for i in range(steps + 5):
        if i == 5:
            t0 = time.perf_counter()
        x = data[torch.randint(0, data.shape[0], (B,), generator=g)]
        loss = loss_fn(score_fn, x, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def framework_loop(config, dataset, steps: int) -> float:
    """Steps/s of training.train (5 warm-up steps excluded)."""
    work = tempfile.mkdtemp(prefix="bench_train_")
    try:
        c = config.copy_and_resolve_references()
        c.training.progress = False
        c.training.n_iters = 5
        train(c, work, dataset=dataset)
        c.training.n_iters = 5 + steps
        t0 = time.perf_counter()
        train(c, work, dataset=dataset)
        return steps / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=run.DEFAULT_CONFIG)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--demo", action="store_true", help="also time `python run.py` (the demo) end to end")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config = run.load_config(args.config)
    dataset = get_dataset(config)
    n_params = sum(q.numel() for q in get_model(config).parameters())
    bare, framework = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(config, dataset, args.steps))
        framework.append(framework_loop(config, dataset, args.steps))
        print(f"bare {bare[-1]:.2f} steps/s, train() {framework[-1]:.2f} steps/s")
    result = {
        "config": os.path.relpath(args.config, ROOT), "params": n_params,
        "batch_size": config.training.batch_size, "steps": args.steps, "threads": args.threads,
        "statistic": "median over repeats (alternating bare / train runs)",
        "bare_steps_per_s": statistics.median(bare), "train_steps_per_s": statistics.median(framework),
        "ratio_train_over_bare": statistics.median(framework) / statistics.median(bare),
        "median_pairwise_ratio": statistics.median(f / b for f, b in zip(framework, bare)),
        "all_bare": bare, "all_train": framework,
        "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }
    if args.demo:
        work = tempfile.mkdtemp(prefix="bench_demo_")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--workdir", work,
                               "--config.training.progress=False"], cwd=ROOT, capture_output=True, text=True)
        result["demo_wall_s"] = time.perf_counter() - t0
        result["demo_returncode"] = proc.returncode
        result["demo_stdout"] = proc.stdout[-2000:]
        try:
            import glob     # each eval run writes eval/step<N>-<trace>-<k>/eval.json
            result["demo_eval"] = json.load(open(sorted(glob.glob(os.path.join(work, "eval", "*", "eval.json")))[-1]))
        except (OSError, IndexError):
            pass
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "train_throughput.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["bare loop", "train()"], [result["bare_steps_per_s"], result["train_steps_per_s"]])
    ax.set_ylabel("steps / s")
    ax.set_title(f"ratio {result['ratio_train_over_bare']:.2f} ({args.threads} threads)")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "train_throughput.png"), dpi=100)
    print(json.dumps({k: v for k, v in result.items() if k not in ("demo_stdout",)}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
