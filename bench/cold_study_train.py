"""The training part of `bench/cold_study.py`: the studies' settings (`STUDIES`, `MODELS`), each
model's config, the equal-wall-time plan (`bench/step_cost.py`) and the training runs."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import load, mean_se, save  # noqa: E402,F401  (cold_study imports them from here)

OUT = os.path.join(ROOT, "bench", "results")
TIMES = (0.1, 0.25, 0.5, 0.75, 1.0)
NOISES = (0.0, 0.002, 0.02, 0.1)
#: run.py overrides of each model (besides the study's data and network)
MODELS = {"hot": (), "blur": ("cold.degradation=blur",),
          "blur_full": ("cold.degradation=blur", "cold.options.blur.sigma_max=inf"),
          "mask": ("cold.degradation=mask",), "pixelate": ("cold.degradation=pixelate",),
          "snow": ("cold.degradation=snow",)}


@dataclass(frozen=True)
class Study:
    tag: str                    # results: bench/results/<tag>.json, runs/<tag>/<model>
    overrides: tuple            # data set and network, as run.py --config.<field>=<value>
    models: tuple               # "hot" first, then names of MODELS
    ref_steps: int              # budget = ref_steps at the hot model's measured cost
    num_samples: int            # per sample set (and test images for restoration)
    prior_fit: int              # training images the priors' mixtures are fitted to (0: all)
    feature_epochs: int         # the feature classifier's epochs (cached per setting)
    ablations: tuple = ("blur_full",)   # models whose prior noise is varied (NOISES)


STUDIES = {
    "digits": Study("cold_digits", (), ("hot", "blur", "blur_full", "mask", "pixelate", "snow"),
                    ref_steps=400, num_samples=359, prior_fit=0, feature_epochs=30),
    # 28x28 on one thread (the study's CPU within 40 min): the demo's widths on three levels (28, 14, 7;
    # attention at 7), one cold model (blur at sigma_max 6; the full blur's cost was measured, its training
    # did not fit the session), no prior-noise ablation
    "fashion_mnist": Study("cold_fashion_mnist", ("data.dataset=fashion_mnist", "data.image_size=28",
                                                  "model.ch_mult=(1, 2, 2)", "model.attn_resolutions=(7,)"),
                           ("hot", "blur"), ref_steps=150, num_samples=200, prior_fit=2000,
                           feature_epochs=2, ablations=()),
}


def model_config(study: Study, name: str, n_iters: int, threads: int):
    """The ConfigDict of one model (the demo config + the study's and model's overrides)."""
    from configs.default import get_default_config
    from runner.config_io import apply_override
    config = get_default_config()
    fields = (*study.overrides, *MODELS[name], f"training.n_iters={n_iters}", f"training.num_threads={threads}",
              "training.progress=False", "training.snapshot_freq=100")
    for f in fields:
        key, value = f.split("=", 1)
        apply_override(config, key, value)
    return config, [f"--config.{f}" for f in fields]


def plan_training(study: Study, a, path):
    """Measure seconds per step of every model side by side and set steps = budget / cost."""
    from bench.step_cost import equal_time_steps, train_step_costs
    res = load(path)
    old = res.get("training_plan")
    if old and not a.replan and old.get("ref_steps") == study.ref_steps:
        print(f"training plan kept from {path} (--replan to measure again)")
        return old
    if old and not a.replan:        # the same measured costs, another budget
        costs, measured = old["seconds_per_step"], old["measured"]
    else:
        configs = {n: model_config(study, n, 1, a.threads)[0] for n in study.models}
        costs = train_step_costs(configs, steps=a.cost_steps, warmup=a.cost_warmup, repeats=a.cost_repeats)
        measured = (f"{a.cost_repeats} alternating rounds of {a.cost_steps} steps per model after {a.cost_warmup} "
                    f"warm-up steps, {a.threads} thread(s); median over rounds, spread = IQR / median")
    budget = study.ref_steps * costs["hot"]["median"]
    plan = {"budget_seconds": budget, "ref_steps": study.ref_steps,
            "budget_rule": f"{study.ref_steps} steps of the hot model at its median cost",
            "steps": equal_time_steps(costs, budget), "seconds_per_step": costs, "measured": measured}
    res["training_plan"] = plan
    save(path, res)
    for n in study.models:
        c = costs[n]
        print(f"{n}: {c['median'] * 1e3:.1f} ms/step (IQR {c['q25'] * 1e3:.1f}-{c['q75'] * 1e3:.1f}) "
              f"-> {plan['steps'][n]} steps", flush=True)
    return plan


def train_all(study: Study, a, plan):
    import run
    for name in study.models:
        _, args = model_config(study, name, plan["steps"][name], a.threads)
        t0 = time.time()
        code = run.main(["--workdir", os.path.join(a.workdir, name), "--mode", "train", *args])
        if code:
            raise SystemExit(f"training {name} failed with status {code}")
        print(f"{name}: trained to {plan['steps'][name]} steps in {time.time() - t0:.0f}s (this call)", flush=True)


def wall_time(wd):
    """Training wall time from metrics.jsonl (sum of the 'time' stamps of each train call)."""
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl")) if line.strip()]
    total, last = 0.0, 0.0
    for r in rows:
        if "time" not in r:
            continue
        if r["time"] < last:          # a resumed call restarts its clock
            total += last
        last = r["time"]
    return total + last
