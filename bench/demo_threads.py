"""The demo's thread default under contention: its training part, quiet and beside one busy process.

    python bench/demo_threads.py                           # full: 300 training steps, 3 repeats
    python bench/demo_threads.py --steps 60 --repeats 1    # a short check that it works

What is measured: the training part of the demo (`python run.py --mode train` on the demo
config, batch 64, the DDPM++ U-Net), cut to `--steps` steps, because training is most of the
demo's time and is where oversubscription hurts (the sampling and eval parts run the same
network, so they move with it). The rate is steps/s between the first and the last logged
step of `metrics.jsonl`, so imports, data loading and the first step's warm-up are not in it;
the wall time of the whole command is recorded too.

Settings (each its own `run.py` process):
- `default`: the config's `training.num_threads` (what a newcomer gets; -1, auto: the CPUs idle
  at start, measured over 0.2 s);
- `<n> threads`: every CPU this process may use (the default before auto);
- `1 thread`: `--config.training.num_threads=1`;
- `cores/2`: half the CPUs (the same as 1 thread on a 2-core machine: then it is not listed);
- `passive`: every CPU with `OMP_WAIT_POLICY=PASSIVE` in the environment (OpenMP workers sleep
  at barriers instead of spinning).

Conditions: `quiet` (nothing else started by this script), and beside one busy process:
`spin` (one pure-Python busy loop, one core), `twin` (a second identical training run
started with the same setting, the case of two researchers' runs on one machine), both started
3 s before the timed run, and `late` (the busy loop started 12 s after the timed run, once it
trains: what auto's start-up measurement cannot see, and its in-training governor must).

The machine's load average (1-minute) before each run and the CPU count go into the JSON
(`bench/results/demo_threads.json`), because a measurement on a machine that other jobs use
is not a quiet measurement: read `load_before` before the numbers. Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATE = 12.0     # seconds after the timed run starts that the late competitor starts
SPIN = "import time\nt = time.time()\nwhile True:\n    t += 1\n"


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads() -> int:
    sys.path.insert(0, ROOT)
    from configs.default import get_default_config
    return int(get_default_config().training.num_threads)


def settings():
    """[(name, threads or None for the config's default, extra env)]."""
    half, n = max(1, cpus() // 2), cpus()
    out = [("default", None, {}), (f"{n} threads", n, {}), ("1 thread", 1, {})]
    if half != 1:
        out.append((f"cores/2 ({half})", half, {}))
    out.append(("passive", n, {"OMP_WAIT_POLICY": "PASSIVE"}))
    return out


def train_cmd(workdir: str, steps: int, threads):
    cmd = [sys.executable, "run.py", "--mode", "train", "--workdir", workdir, f"--config.training.n_iters={steps}",
           "--config.training.log_freq=10", f"--config.training.snapshot_freq={steps}",
           "--config.training.progress=False"]
    if threads is not None:
        cmd.append(f"--config.training.num_threads={threads}")
    return cmd


def rate(workdir: str) -> float:
    """Training steps/s between the first and last logged step (no imports, data loading, warm-up)."""
    path = os.path.join(workdir, "metrics.jsonl")
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    rows = [r for r in rows if "loss" in r]
    if len(rows) < 2:                     # capped before two logged steps: not even 10 steps in the cap
        return float("nan")
    first, last = rows[0], rows[-1]
    return (last["step"] - first["step"]) / max(last["time"] - first["time"], 1e-9)


def env_for(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(extra)
    return env


def run_once(tmp: str, steps: int, threads, extra_env: dict, condition: str, max_seconds: float) -> dict:
    load = os.getloadavg()[0]
    wd = tempfile.mkdtemp(dir=tmp)
    shutil.rmtree(wd)
    other, other_wd = None, None
    if condition == "spin":
        other = subprocess.Popen([sys.executable, "-c", SPIN])
    elif condition == "twin":
        other_wd = tempfile.mkdtemp(dir=tmp)
        shutil.rmtree(other_wd)
        other = subprocess.Popen(train_cmd(other_wd, steps * 10, threads), cwd=ROOT, env=env_for(extra_env),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if other is not None:
            time.sleep(3.0)            # let the competitor get going (imports) before timing
        t0 = time.perf_counter()
        run = subprocess.Popen(train_cmd(wd, steps, threads), cwd=ROOT, env=env_for(extra_env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if condition == "late":        # the competitor starts after the run, once it is training
            time.sleep(LATE)
            other = subprocess.Popen([sys.executable, "-c", SPIN])
        capped = False
        try:
            out, err = run.communicate(timeout=max_seconds)
        except subprocess.TimeoutExpired:     # a collapsed run: stop it, rate from the steps it logged
            run.kill()
            out, err = run.communicate()
            capped = True
        proc = subprocess.CompletedProcess(run.args, 0 if capped else run.returncode, out, err)
        wall = time.perf_counter() - t0
    finally:
        if other is not None:
            other.kill()
            other.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"training failed:\n{proc.stderr[-2000:]}")
    return {"steps_per_s": rate(wd), "wall_s": wall, "load_before": load, "capped": capped}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per run (the demo trains 1,700)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--conditions", default="quiet,spin,twin,late")
    p.add_argument("--settings", default="", help="comma-separated setting names to run (default: all)")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="stop a run after this many seconds (collapsed runs); its rate is from the steps it logged")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "demo_threads.json"))
    a = p.parse_args(argv)
    conditions = [c.strip() for c in a.conditions.split(",") if c.strip()]
    for c in conditions:
        if c not in ("quiet", "spin", "twin", "late"):
            raise SystemExit(f"error: unknown condition {c!r}; expected quiet, spin, twin or late")
    tmp = tempfile.mkdtemp(prefix="demo_threads-")
    rows = []
    try:
        for rep in range(a.repeats):              # repeats alternate over every cell (drift hits all alike)
            for condition in conditions:
                for name, threads, extra in settings():
                    if a.settings and name not in a.settings.split(","):
                        continue
                    r = run_once(tmp, a.steps, threads, extra, condition, a.max_seconds)
                    r.update({"setting": name, "condition": condition, "repeat": rep,
                              "threads": threads if threads is not None else default_threads(), "env": extra})
                    rows.append(r)
                    print(f"{condition:6s} {name:14s} rep {rep}: {r['steps_per_s']:6.2f} steps/s, "
                          f"wall {r['wall_s']:6.1f} s (load before {r['load_before']:.2f})"
                          f"{' CAPPED' if r['capped'] else ''}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    for condition in conditions:
        for name, _, _ in settings():
            vals = [r["steps_per_s"] for r in rows if r["condition"] == condition and r["setting"] == name]
            if not vals:
                continue
            se = statistics.stdev(vals) / len(vals) ** 0.5 if len(vals) > 1 else float("nan")
            summary[f"{condition} / {name}"] = {"mean_steps_per_s": statistics.mean(vals), "se": se, "n": len(vals)}
    out = {"what": "training part of the demo (run.py --mode train, demo config), steps/s between logged steps",
           "steps": a.steps, "repeats": a.repeats, "cpus": cpus(), "default_threads": default_threads(),
           "load_average_at_start_and_end": [rows[0]["load_before"], os.getloadavg()[0]],
           "max_load_before": max(r["load_before"] for r in rows),
           "note": "load_before is the 1-minute load average before each run; it includes the tail of this "
                   "script's own previous run, so a quiet machine reads about 1-2 here, not 0. Higher: other "
                   "jobs ran, and the numbers are not a quiet measurement",
           "rows": rows, "summary": summary}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"\n{'condition / setting':28s} steps/s ± SE")
    for key, v in summary.items():
        print(f"{key:28s} {v['mean_steps_per_s']:.2f} ± {v['se']:.2f} (n={v['n']})")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
