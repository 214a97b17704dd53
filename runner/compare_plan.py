"""The plan of a `--mode compare` study: which samplers, which budgets, which cells.

A *cell* is one (score, sampler, budget, seed) run. Budgets are a shared ladder of NFE
(score evaluations, the final denoising step included). Each sampler's NFE per step is
measured, not tabulated: dry runs with 3 and 4 steps (a multistep method may need a few steps
to warm up) on one sample with the trivial score `-x` give `nfe = overhead + per_step * steps`, and a budget b maps to
`steps = max(1, round((b - overhead) / per_step))`. A sampler whose NFE does not change with
`steps` is adaptive (the `ode` sampler with rk45): it runs at each of `compare.tolerances`.

A study's rows are sampler *entries*: a registry name, or a variant that calls it with options,
e.g. `pc(predictor=probability_flow, corrector=langevin, steps=1000)` (Song et al. 2021's
Table 1 is ten such variants per SDE); `configs.schema.parse_sampler_entry` parses them. A variant that fixes `steps` runs at that one budget.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Dict, List, Tuple

import torch

import solvers
from configs.errors import InputError

QUICK = dict(nfe=(5, 10, 20), tolerances=(1e-2,), num_samples=200)


def settings(c) -> dict:
    """The effective study settings: `compare.quick` replaces the ladder, tolerances and sample size."""
    s = dict(nfe=tuple(c.nfe), tolerances=tuple(c.tolerances), num_samples=int(c.num_samples))
    if c.quick:
        s.update(QUICK)
    s["seeds"] = tuple(int(v) for v in c.seeds)
    return s


def step_cost(sde, name: str, options: dict, dims, denoise: bool) -> Tuple[int, int]:
    """(overhead, per_step) NFE of sampler `name` with `options`, from dry runs at 3 and 4 steps
    on one sample with the score -x. per_step = 0 means adaptive (NFE independent of steps)."""
    nfe = []
    for steps in (3, 4):
        try:
            _, info = solvers.sample(sde, lambda x, t: -x, (1, *dims), sampler=name, denoise=denoise,
                                     generator=torch.Generator().manual_seed(0), **{**options, "steps": steps})
        except ValueError as e:
            raise InputError(f"compare: sampler {name!r} with options {options} failed its dry run: {e}") from None
        nfe.append(int(info.nfe))
    return nfe[0] - 3 * (nfe[1] - nfe[0]), nfe[1] - nfe[0]


def budgets(base: dict, s: dict, cost: Tuple[int, int]) -> List[Tuple[dict, dict]]:
    """[(budget label, sampler options)] of a sampler with options `base` and measured
    `cost = (overhead, per_step)` (`step_cost`): one per NFE of the ladder (distinct step counts
    only), one per tolerance if the sampler is adaptive, or, for a variant that fixes `steps`,
    that one step count."""
    overhead, per_step = cost
    if "steps" in base:
        return [({"steps": base["steps"], "nfe_budget": overhead + per_step * base["steps"], "fixed": True},
                 dict(base))]
    if per_step == 0:
        return [({"tol": tol}, {**base, "rtol": tol, "atol": tol}) for tol in s["tolerances"]]
    out, seen = [], set()
    for b in s["nfe"]:
        steps = max(1, round((b - overhead) / per_step))
        if steps not in seen:
            seen.add(steps)
            out.append(({"nfe_budget": b, "steps": steps}, {**base, "steps": steps}))
    return out


def cell_key(cell: dict, context: dict) -> str:
    """A stable id of one cell and everything its result depends on (checkpoint, data, sizes)."""
    blob = json.dumps({"cell": {k: cell[k] for k in ("score", "sampler", "options", "seed")},
                       "context": context}, sort_keys=True, default=repr)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def grid_labels(rows: List[dict]) -> List[str]:
    """The 2-3 budgets of one sampler that get a sample grid: the smallest, middle and largest."""
    labels = []
    for r in rows:
        if r["label"] not in labels:
            labels.append(r["label"])
    pick = {labels[0], labels[len(labels) // 2], labels[-1]} if labels else set()
    return [lab for lab in labels if lab in pick]


def label_of(budget: Dict) -> str:
    if "tol" in budget:
        return f"tol={budget['tol']:g}"
    return f"steps={budget['steps']}" if budget.get("fixed") else f"nfe={budget['nfe_budget']}"


def slug(entry: str) -> str:
    """A file-name-safe form of a sampler entry ("pc(predictor=ancestral)" -> "pc-predictor-ancestral")."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", entry).strip("-")


def grid_file(row) -> str:
    """File name of one cell's sample grid inside compare_grids/ (with the cell key, so a grid is
    never mistaken for that of another configuration in the same workdir)."""
    return f"{row['score']}_{slug(row['sampler'])}_{row['label']}_{row['key']}.png".replace("=", "")
