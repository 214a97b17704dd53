"""The sampler entries of `config.compare.samplers`: a registry name ("pc") or a variant, the name
called with options ("pc(predictor=ancestral, steps=1000)"). `parse_sampler_entry` parses one entry,
`resolve_samplers` the whole field. Used by `configs.schema.validate_compare` and `runner.compare`.
"""
from __future__ import annotations

import ast
from typing import List, Tuple

import solvers

from .errors import ConfigError


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)

def parse_sampler_entry(text: str) -> Tuple[str, dict]:
    """A sampler entry of `config.compare.samplers`: a registry name ("pc") or a *variant*, the name
    called with options ("pc(predictor=ancestral, corrector=none, steps=1000)"). Option values are
    Python literals; a bare word is a string. Returns (name, options)."""
    text = str(text).strip()
    field = "compare.samplers"
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
                raise ConfigError(field, text, "options written as key=value, not **")
            v = kw.value
            options[kw.arg] = v.id if isinstance(v, ast.Name) else _literal(v, text)
    else:
        raise ConfigError(field, text, "entries such as 'pc' or 'pc(predictor=ancestral, steps=1000)' "
                                       "(bad sampler entry)")
    if name not in solvers.SAMPLERS:
        raise ConfigError(field, text, f"'all' or sampler names from {list(solvers.SAMPLERS)} "
                                       f"(unknown sampler {name!r})")
    allowed = set(solvers.SAMPLERS[name].options) | {"steps", "schedule", "rho"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(field, text, f"options of {name!r} among {sorted(allowed)} "
                                       f"(unknown option(s) {unknown} for {name!r})")
    if "steps" in options and (not _is_int(options["steps"]) or options["steps"] < 1):
        raise ConfigError(field, text, f"steps as an int >= 1 (steps must be an int >= 1, got {options['steps']!r})")
    return name, options


def _literal(node, text):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ConfigError("compare.samplers", text, "option values that are literals or bare words") from None


def resolve_samplers(spec) -> Tuple[str, ...]:
    """`"all"` (every registered sampler, resolved now so new samplers join), a tuple of entries,
    or a string of entries ("a,b" or "('a', 'b')"); each entry checked by `parse_sampler_entry`."""
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
        raise ConfigError("compare.samplers", spec, "'all' or a non-empty tuple of sampler entries")
    for name in names:
        parse_sampler_entry(name)
    if len(set(names)) != len(names):
        raise ConfigError("compare.samplers", names, "distinct entries (it lists an entry twice)")
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
