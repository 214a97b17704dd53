"""Imports flow one way: no cycle in the project's import graph (imports inside functions count), and
every module imports on its own, first, in a fresh set of project modules."""
import ast
import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("configs", "sde_lib", "models", "solvers", "training", "evaluation", "runner")
# Imports inside functions that remain (none).
ALLOWED_FUNCTION_IMPORTS = set()


def project_modules():
    """{dotted name: path} of run.py and every module of the project's packages."""
    out = {"run": os.path.join(ROOT, "run.py")}
    for pkg in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
            rel = os.path.relpath(dirpath, ROOT).split(os.sep)
            for f in files:
                if f.endswith(".py"):
                    out[".".join(rel + ([] if f == "__init__.py" else [f[:-3]]))] = os.path.join(dirpath, f)
    return out


def _target(name, mods):
    """The project module an imported name lives in (a.b.c -> the longest of a.b.c, a.b, a that exists)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in mods:
            return ".".join(parts[:i])
    return None


def import_edges(mods):
    """[(importer, imported, inside_a_function)] for every import statement of every module."""
    edges = []
    for name, path in mods.items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]

        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                names = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[:len(package.split(".")) - (child.level - 1)]
                        base = ".".join(up + ([child.module] if child.module else []))
                    # `from pkg import x` runs pkg/__init__ (an edge to pkg) and maybe imports pkg.x
                    names = [base] + [f"{base}.{a.name}" for a in child.names]
                for n in names:
                    t = _target(n, mods)
                    if t is not None and t != name:
                        edges.append((name, t, inside))
                visit(child, inside)
        visit(tree, False)
    return edges


def find_cycle(graph):
    """One cycle [a, b, ..., a] of a directed graph {node: set(nodes)}, or None (iterative DFS)."""
    state = {}
    for start in graph:
        if state.get(start):
            continue
        stack, path = [(start, iter(sorted(graph[start])))], [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            nxt = next(children, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                path.append(nxt)
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_has_no_cycle():
    mods = project_modules()
    graph = {m: set() for m in mods}
    for a, b, _ in import_edges(mods):
        graph[a].add(b)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_level_imports_of_project_modules():
    """Project imports sit at the top of a module (no import hidden in a function to dodge a cycle)."""
    inside = {(a, b) for a, b, f in import_edges(project_modules()) if f}
    assert inside <= ALLOWED_FUNCTION_IMPORTS, sorted(inside - ALLOWED_FUNCTION_IMPORTS)


def test_shared_import_graph_tool_agrees():
    tool = os.path.join(ROOT, "..", "..", "shared", "tools", "import_graph.py")
    if not os.path.isfile(tool):
        pytest.skip("the shared import_graph tool is not on this machine")
    p = subprocess.run([sys.executable, tool], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "cycle:" not in p.stdout and " 0 cycles" in p.stdout, p.stdout


def test_every_module_imports_first(tmp_path, monkeypatch):
    """Each module, imported before any other project module, imports without error: the project's
    modules are dropped from sys.modules before each import (third-party ones stay loaded, which keeps
    this cheap) and put back afterwards. The slow variant below uses a fresh interpreter per module."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path))      # compile each source file once
    monkeypatch.syspath_prepend(ROOT)
    ours = lambda m: m == "run" or m.split(".")[0] in PACKAGES
    saved = {m: mod for m, mod in sys.modules.items() if ours(m)}
    failed = []
    try:
        for name in sorted(project_modules()):
            for m in [m for m in sys.modules if ours(m)]:
                del sys.modules[m]
            try:
                importlib.import_module(name)
            except Exception as e:
                failed.append(f"{name}: {type(e).__name__}: {e}")
    finally:
        for m in [m for m in sys.modules if ours(m)]:
            del sys.modules[m]
        sys.modules.update(saved)
    assert not failed, failed


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(project_modules()))
def test_module_imports_in_a_fresh_interpreter(name):
    p = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert p.returncode == 0, p.stderr
