"""Training steps/s and sampling samples/s with 1 and 2 processes (torchrun, gloo on CPU).

    python bench/ddp_scaling.py [--repeats 3] [--steps 100] [--samples 256] [--threads 1]

Strong scaling: the global training batch (`training.batch_size`, 64 in the demo config) is
split over the processes, and the same `--samples` are split over them when sampling. Each
process runs `--threads` torch threads. Runs alternate 1 and 2 processes, `--repeats` times;
the report gives medians and the median of the pairwise ratios (2 processes / 1 process).

Timing: steps/s from metrics.jsonl's `time` between the first and the last logged step
(excluding start-up: imports, data, the process group); samples/s from sample.json's
`seconds` (sampling loop on rank 0, gathering included). Model: the demo's DDPM++ U-Net on
8x8 digits, training in fp32; sampling with ddim, 50 steps, 64 samples per process-batch.
Writes bench/results/ddp_scaling.json and .png.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results")


def launch(nproc, threads, args):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           os.path.join(ROOT, "run.py"), *args, f"--config.training.num_threads={threads}",
           "--config.training.progress=False", "--config.device=cpu"]
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed ({nproc} processes): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p.stdout.strip().splitlines()


def train_rate(nproc, threads, steps, log_freq):
    wd = tempfile.mkdtemp(prefix="ddp_bench_")
    launch(nproc, threads, ["--workdir", wd, "--mode", "train", f"--config.training.n_iters={steps}",
                            f"--config.training.log_freq={log_freq}", f"--config.training.snapshot_freq={steps}"])
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
    first, last = rows[0], rows[-1]
    return (last["step"] - first["step"]) / (last["time"] - first["time"]), wd


def sample_rate(nproc, threads, wd, n):
    out = launch(nproc, threads, ["--workdir", wd, "--mode", "sample", "--config.sampling.sampler=ddim",
                                  "--config.sampling.steps=50", f"--config.sampling.num_samples={n}",
                                  "--config.sampling.batch_size=64"])
    info = json.load(open(os.path.join(os.path.dirname(out[-1]), "sample.json")))
    return n / info["seconds"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    runs = {1: {"train": [], "sample": []}, 2: {"train": [], "sample": []}}
    for r in range(a.repeats):
        for nproc in (1, 2):
            rate, wd = train_rate(nproc, a.threads, a.steps, max(1, a.steps // 10))
            runs[nproc]["train"].append(rate)
            runs[nproc]["sample"].append(sample_rate(nproc, a.threads, wd, a.samples))
            print(f"repeat {r}: {nproc} process(es): {rate:.2f} steps/s, {runs[nproc]['sample'][-1]:.1f} samples/s",
                  flush=True)
    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in runs.items()}
    ratios = {k: statistics.median([b / a_ for a_, b in zip(runs[1][k], runs[2][k])]) for k in ("train", "sample")}
    report = {"what": "strong scaling, 1 vs 2 torchrun processes (gloo, CPU)", "model": "demo DDPM++ U-Net, 8x8 digits",
              "global_batch": 64, "train_steps": a.steps, "samples": a.samples, "sampler": "ddim, 50 steps",
              "threads_per_process": a.threads, "cpu_count": os.cpu_count(), "repeats": a.repeats,
              "runs": runs, "median": med, "median_pairwise_ratio_2_over_1": ratios,
              "load_average_at_end": os.getloadavg(),
              "note": "shared 2-core machine with other jobs running; wall-clock numbers are noisy"}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "ddp_scaling.json"), "w") as f:
        json.dump(report, f, indent=2)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, key, unit in ((axes[0], "train", "training steps/s"), (axes[1], "sample", "samples/s")):
        for n in (1, 2):
            ax.scatter([n] * len(runs[n][key]), runs[n][key], color="C0", alpha=0.5)
        ax.plot([1, 2], [med[1][key], med[2][key]], "o-", color="C1", label="median")
        ax.plot([1, 2], [med[1][key], 2 * med[1][key]], ":", color="k", label="linear scaling")
        ax.set_xticks([1, 2])
        ax.set_xlabel("processes")
        ax.set_ylabel(unit)
        ax.set_title(f"2/1 = {ratios[key]:.2f}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "ddp_scaling.png"), dpi=100)
    print(json.dumps({"median": med, "ratio": ratios}, indent=1))


if __name__ == "__main__":
    main()
