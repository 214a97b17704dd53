"""The plan of a `--mode compare` study: which samplers, which budgets, which cells.

A *cell* is one (score, sampler, budget, seed) run. Budgets are a shared ladder of NFE
(score evaluations, the final denoising step included). Each sampler's NFE per step is
measured, not tabulated: dry runs with 3 and 4 steps (a multistep method may need a few steps
to warm up) on one sample with the trivial score `-x` give `nfe = overhead + per_step * steps`, and a budget b maps to
`steps = max(1, round((b - overhead) / per_step))`. A sampler whose NFE does not change with
`steps` is adaptive (the `ode` sampler with rk45): it runs at each of `compare.tolerances`.

A study's rows are sampler *entries*: a registry name, or a variant that calls it with options,
e.g. `pc(predictor=probability_flow, corrector=langevin, steps=1000)` (Song et al. 2021's
Table 1 is ten such variants per SDE). A variant that fixes `steps` runs at that one budget.
"""
from __future__ import annotations

import ast
import hashlib
import json
from typing import Dict, List, Tuple

QUICK = dict(nfe=(5, 10, 20), tolerances=(1e-2,), num_samples=200)


def parse_spec(text: str) -> Tuple[str, dict]:
    """A sampler entry of `config.compare.samplers`: a registry name ("pc") or a *variant*, the name
    called with options ("pc(predictor=ancestral, corrector=none, steps=1000)"). Option values are
    Python literals; a bare word is a string. A variant with `steps` runs at that step count only
    (not on the NFE ladder). Raises ValueError naming the entry."""
    import solvers
    text = str(text).strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        node = None
    if isinstance(node, ast.Name):
        name, options = node.id, {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
        name, options = node.func.id, {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError(f"sampler variant {text!r}: write options as key=value, not **")
            v = kw.value
            options[kw.arg] = v.id if isinstance(v, ast.Name) else _literal(v, text)
    else:
        raise ValueError(f"bad sampler entry {text!r} in config.compare.samplers; expected a name such as "
                         f"'pc' or a variant such as 'pc(predictor=ancestral, steps=1000)'")
    if name not in solvers.SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} in config.compare.samplers; "
                         f"expected 'all' or names from {list(solvers.SAMPLERS)}")
    allowed = set(solvers.SAMPLERS[name].options) | {"steps", "schedule", "rho"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"sampler variant {text!r}: unknown option(s) {unknown} for {name!r}; "
                         f"expected some of {sorted(allowed)}")
    if "steps" in options and (isinstance(options["steps"], bool) or not isinstance(options["steps"], int)
                               or options["steps"] < 1):
        raise ValueError(f"sampler variant {text!r}: steps must be an int >= 1, got {options['steps']!r}")
    return name, options


def _literal(node, text):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"sampler variant {text!r}: option values must be literals or bare words, "
                         f"got {ast.unparse(node)!r}") from None


def resolve_samplers(spec) -> Tuple[str, ...]:
    """`"all"` (every registered sampler, resolved now so new samplers join), a tuple of entries,
    or a string of entries ("a,b" or "('a', 'b')"). An entry is a name or a variant (`parse_spec`).
    Unknown names or options raise ValueError."""
    import solvers
    names = spec
    if isinstance(spec, str):
        text = spec.strip()
        if text == "all":
            return tuple(solvers.SAMPLERS)
        try:
            names = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            names = _split_top(text)
        if isinstance(names, str):
            names = (names,)
    names = tuple(str(n).strip() for n in names)
    if not names:
        raise ValueError("config.compare.samplers is empty; use 'all' or a tuple of sampler names")
    for name in names:
        parse_spec(name)
    if len(set(names)) != len(names):
        raise ValueError(f"config.compare.samplers lists an entry twice: {list(names)}")
    return names


def _split_top(text: str) -> List[str]:
    """Split "a, pc(x=1, y=2)" at the commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out if s.strip()]


def settings(c) -> dict:
    """The effective study settings: `compare.quick` replaces the ladder, tolerances and sample size."""
    s = dict(nfe=tuple(c.nfe), tolerances=tuple(c.tolerances), num_samples=int(c.num_samples))
    if c.quick:
        s.update(QUICK)
    s["seeds"] = tuple(int(v) for v in c.seeds)
    return s


def validate_compare(c) -> None:
    """Fail before any work on a bad `config.compare` block."""
    resolve_samplers(c.samplers)
    for v in c.nfe:
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"config.compare.nfe must hold ints >= 2 (score evaluations), got {v!r}")
    for v in c.tolerances:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            raise ValueError(f"config.compare.tolerances must hold numbers > 0, got {v!r}")
    if not isinstance(c.num_samples, int) or isinstance(c.num_samples, bool) or c.num_samples < 10:
        raise ValueError(f"config.compare.num_samples must be an int >= 10, got {c.num_samples!r}")
    seeds = tuple(c.seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                                         for s in seeds):
        raise ValueError(f"config.compare.seeds must be distinct ints >= 0, got {seeds!r}")
    if len(seeds) < 2:
        raise ValueError(f"config.compare.seeds needs at least 2 seeds for a standard error, got {seeds!r}")
    from evaluation import LOWER_IS_BETTER
    if c.primary_metric and c.primary_metric not in LOWER_IS_BETTER:
        raise ValueError(f"unknown config.compare.primary_metric {c.primary_metric!r}; expected '' (auto) "
                         f"or one of {sorted(LOWER_IS_BETTER)}")


def step_cost(sde, name: str, options: dict, dims, denoise: bool) -> Tuple[int, int]:
    """(overhead, per_step) NFE of sampler `name` with `options`, from dry runs at 3 and 4 steps
    on one sample with the score -x. per_step = 0 means adaptive (NFE independent of steps)."""
    import torch
    import solvers
    nfe = []
    for steps in (3, 4):
        try:
            _, info = solvers.sample(sde, lambda x, t: -x, (1, *dims), sampler=name, denoise=denoise,
                                     generator=torch.Generator().manual_seed(0), **{**options, "steps": steps})
        except ValueError as e:
            raise ValueError(f"compare: sampler {name!r} with options {options} failed its dry run: {e}") from None
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
    import re
    return re.sub(r"[^A-Za-z0-9_.]+", "-", entry).strip("-")


def grid_file(row) -> str:
    """File name of one cell's sample grid inside compare_grids/ (with the cell key, so a grid is
    never mistaken for that of another configuration in the same workdir)."""
    return f"{row['score']}_{slug(row['sampler'])}_{row['label']}_{row['key']}.png".replace("=", "")
