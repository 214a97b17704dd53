"""Equal training wall time on a shared machine: measure each model's seconds per training step side
by side, then give each model `steps = budget / cost`.

A live wall-clock stop ("train each model for 10 minutes") is distorted by whatever else the
machine runs at the time; costs measured in short alternating chunks see the same load, so
their ratios are fair even when their absolute values are not. Used by `bench/cold_study.py`
(hot against cold diffusion); any study can call it:

    from bench.step_cost import alternating_costs, train_step_costs, equal_time_steps

    costs = train_step_costs({"hot": hot_config, "blur": blur_config}, steps=10, repeats=5)
    plan = equal_time_steps(costs, budget_seconds=400 * costs["hot"]["median"])
    # plan["blur"] = round(budget / median seconds per step of blur)

`alternating_costs` is the generic core: it takes `{name: chunk()}` where one call of `chunk`
runs some training steps and returns how many it ran (or `(steps, seconds)` when it times itself),
and runs the chunks in rotation (round r starts at model r mod M, so no model always goes first).
"""
from __future__ import annotations

import math
import os
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict, Mapping, Optional

__all__ = ["alternating_costs", "train_step_costs", "equal_time_steps", "summarise"]


def summarise(values) -> dict:
    """median, quartiles, min, max, relative spread (IQR / median) and the raw values of seconds per step
    (in round order, so that models can be paired round by round)."""
    raw = [float(x) for x in values]
    v = sorted(raw)
    if not v:
        raise ValueError("no measurements to summarise")
    med = statistics.median(v)
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return {"median": med, "q25": q[0], "q75": q[2], "min": v[0], "max": v[-1],
            "spread": (q[2] - q[0]) / med if med > 0 else float("nan"), "n": len(v), "values": raw}


def alternating_costs(chunks: Mapping[str, Callable[[], object]], repeats: int = 5,
                      clock: Callable[[], float] = time.perf_counter) -> Dict[str, dict]:
    """Seconds per step of each model, measured in `repeats` rounds of one chunk per model.

    chunks:  name -> chunk(); a chunk runs some steps and returns their number `k` (the chunk is
             timed with `clock`) or `(k, seconds)` (the chunk timed itself, e.g. excluding start-up).
    Returns name -> `summarise` of the per-round seconds per step (median and spread over rounds)."""
    if not chunks:
        raise ValueError("alternating_costs needs at least one model")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    names = list(chunks)
    per = {n: [] for n in names}
    for r in range(repeats):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            t0 = clock()
            out = chunks[name]()
            elapsed = clock() - t0
            k, seconds = out if isinstance(out, tuple) else (out, elapsed)
            if not (isinstance(k, int) and k > 0 and math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"chunk {name!r} must return steps > 0 (and seconds >= 0), got {out!r}")
            per[name].append(seconds / k)
    return {n: summarise(per[n]) for n in names}


def equal_time_steps(costs: Mapping[str, dict], budget_seconds: float, minimum: int = 1) -> Dict[str, int]:
    """Steps per model for one wall-time budget: round(budget / median seconds per step)."""
    if not (isinstance(budget_seconds, (int, float)) and math.isfinite(budget_seconds) and budget_seconds > 0):
        raise ValueError(f"budget_seconds must be a finite number > 0, got {budget_seconds!r}")
    return {n: max(minimum, int(round(budget_seconds / c["median"]))) for n, c in costs.items()}


def _last_loop_time(workdir: str) -> float:
    """Seconds of the last `training.train` call's loop: the `time` stamp of the last metrics row
    (the loop's clock starts after start-up and checkpoint loading, and the row is written before
    the final snapshot)."""
    import json
    last = None
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if "time" in row:
                    last = row["time"]
    if last is None:
        raise RuntimeError(f"no timed metrics row in {workdir}/metrics.jsonl")
    return float(last)


def train_step_costs(configs: Mapping, steps: int = 10, warmup: int = 5, repeats: int = 5,
                     datasets: Optional[Mapping] = None, clock: Callable[[], float] = time.perf_counter) -> Dict[str, dict]:
    """Seconds per step of `training.train` for each config (a scoresde ConfigDict), alternating.

    Each model trains in its own temporary directory: `warmup` untimed steps, then each round
    resumes it for `steps` more, timed by the loop's own clock (start-up, checkpoint loading and
    saving excluded: those are paid once per run, not per step). Monitor work configured in the
    config (`eval_freq`, `sample_freq`) is inside the loop and counted. Directories are removed."""
    from training import train
    from training.data import get_dataset
    work = {n: tempfile.mkdtemp(prefix=f"step_cost_{n}_") for n in configs}
    cfgs, data = {}, {}
    try:
        for name, config in configs.items():
            c = config.copy_and_resolve_references()
            c.training.progress = False
            c.training.log_freq = steps
            c.training.snapshot_freq = 10 ** 9
            c.training.n_iters = warmup
            data[name] = (datasets or {}).get(name) or get_dataset(c)
            train(c, work[name], dataset=data[name])
            cfgs[name] = c

        def chunk(name):
            def run():
                c = cfgs[name]
                c.training.n_iters += steps
                train(c, work[name], dataset=data[name])
                return steps, _last_loop_time(work[name])
            return run
        return alternating_costs({n: chunk(n) for n in configs}, repeats, clock)
    finally:
        for d in work.values():
            shutil.rmtree(d, ignore_errors=True)
