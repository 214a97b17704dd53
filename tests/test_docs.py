"""Every ```python block of README.md and docs/**/*.md runs as pasted, and the README's CLI
recipes run on tiny settings.

A python block runs in a fresh interpreter from the repository root. A block whose first line
is `# continues` runs after the blocks it continues, in the same interpreter (a chain is one
process; a failure names the page and line of the failing block).
"""
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTINUES = "# continues"
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                                                                            recursive=True))


def fenced_blocks(text: str, lang: str):
    """[(line number of the block's first code line, code)] for every ```lang block."""
    return [(text[:m.start(1)].count("\n") + 1, m.group(1))
            for m in re.finditer(r"^```" + lang + r"[ \t]*\n(.*?)^```", text, re.S | re.M)]


def python_chains():
    """One chain per fresh interpreter: a block and the `# continues` blocks that follow it."""
    chains = []
    for page in PAGES:
        blocks = fenced_blocks(open(os.path.join(ROOT, page), encoding="utf-8").read(), "python")
        for line, code in blocks:
            if code.lstrip().startswith(CONTINUES):
                if not chains or chains[-1][0] != page:
                    raise AssertionError(f"{page}:{line}: a '# continues' block with no block before it on the page")
                chains[-1][1].append((line, code))
            else:
                chains.append((page, [(line, code)]))
    return chains


CHAINS = python_chains()
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
           MKL_NUM_THREADS="1", MPLBACKEND="Agg")

# A fresh interpreter per chain costs ~3 s of imports here; a server that has imported torch and
# the project once forks a child per chain instead. The child starts from that clean state with an
# empty namespace, so a block that forgets an import still fails with NameError.
SERVER = r"""
import json, os, sys, traceback
import torch
torch.set_num_threads(1)
import numpy, sde_lib, models, solvers, training, evaluation     # noqa: F401  (the costly imports, once)
chains = json.load(sys.stdin)
results = []
for i, blocks in enumerate(chains):
    err = os.path.join(os.environ["DOCS_TMP"], f"chain{i}.err")
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        scope = {"__name__": "__main__"}
        try:
            for where, code in blocks:
                exec(compile(code, where, "exec"), scope)
            os._exit(0)
        except BaseException:
            open(err, "w").write(traceback.format_exc())
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    results.append(None if status == 0 else (open(err).read() if os.path.exists(err) else f"status {status}"))
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def chain_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    chains = [[(f"{page}:{line}", code) for line, code in blocks] for page, blocks in CHAINS]
    proc = subprocess.run([sys.executable, "-c", SERVER], input=json.dumps(chains), cwd=ROOT,
                          env=dict(ENV, DOCS_TMP=str(tmp)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("index", range(len(CHAINS)), ids=[f"{p}:{b[0][0]}" for p, b in CHAINS])
def test_python_block_runs(index, chain_results):
    page, blocks = CHAINS[index]
    assert chain_results[index] is None, f"{page}:{blocks[-1][0]} failed:\n{chain_results[index]}"


def test_block_discovery():
    """The extractor finds every fenced python block and the `# continues` chaining works."""
    text = "a\n```python\nx = 1\n```\n\n```python\n# continues\ny = x\n```\n```bash\nls\n```\n"
    assert fenced_blocks(text, "python") == [(3, "x = 1\n"), (7, "# continues\ny = x\n")]
    assert len(CHAINS) >= 8 and any(len(b) > 1 for _, b in CHAINS)
    assert any(p == "README.md" for p, _ in CHAINS)


# ---- the README's ten CLI recipes on tiny settings --------------------------------------------

TINY = ["--config.training.num_threads=1", "--config.training.progress=False", "--config.model.nf=8",
        "--config.training.n_iters=2", "--config.training.snapshot_freq=1000",
        "--config.sampling.num_samples=4", "--config.sampling.batch_size=4", "--config.sampling.steps=3",
        "--config.sampling.samples_per_class=1"]
EXTRA = {   # per recipe: settings that make it cheap (appended to the README's command)
    2: [], 3: ["--config.eval.num_samples=4", "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2",
               "--config.eval.repeats=1", "--config.eval.estimator=ode"],
    4: ["--config.compare.quick=False", "--config.compare.samplers=ddim, dpmpp_2m", "--config.compare.nfe=(4, 6)", "--config.compare.seeds=(0, 1)",
        "--config.compare.num_samples=10", "--config.compare.feature_epochs=1", "--config.compare.progress=False",
        "--config.compare.feature_cache=FEATURES"],
    5: ["--config.inpaint.steps=3", "--config.inpaint.num_images=2"],
    9: ["--config.training.n_iters=3"],
    10: ["--config.model.ch_mult=(1, 2)", "--config.model.num_res_blocks=1", "--config.model.attn_resolutions=(4,)",
         "--config.data.image_size=8"],     # the shape of the score_sde fixture (nf=8 is in TINY)
    "10b": ["--config.sampling.steps=3"],
}
FIXTURE = os.path.join(ROOT, "tests", "data", "pretrained", "score_sde_vp_ddpmpp.pth")
SKIPPED = {8: "torchrun: tests/test_distributed.py runs the same code path with 2 gloo processes"}
PLUGIN = '''
from solvers import register_sampler

def my_euler(sde, score, x, ts, noise, callback):
    """Euler on the probability-flow ODE."""
    rsde = sde.reverse(score, probability_flow=True)
    for i in range(len(ts) - 1):
        drift, _ = rsde.sde(x, ts[i].expand(x.shape[0]))
        x = x - drift * (ts[i] - ts[i + 1])
        callback(i, x)
    return x

register_sampler("my_euler", my_euler, options={})
'''


def readme_recipes():
    """{number: argv} from the README's recipe block (a trailing `# N ...` comment numbers a recipe)."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = text[text.index("## The command line in ten recipes"):]
    code = fenced_blocks(block, "bash")[0][1]
    recipes, last = {}, None
    for line in code.splitlines():
        cmd, _, comment = line.partition("#")
        m = re.match(r"\s*(\d+)\b", comment)
        key = int(m.group(1)) if m else f"{last}b"
        recipes[key] = shlex.split(cmd)
        last = key if m else last
    return recipes


def test_readme_has_ten_recipes():
    recipes = readme_recipes()
    assert sorted(k for k in recipes if isinstance(k, int)) == list(range(1, 11))


def test_readme_recipes_run(tmp_path, monkeypatch, capsys):
    """Recipes 1-7, 9 and 10 in the README's order, each with settings that make it take seconds. They
    run in this process through `run.main` (what `python run.py` calls), which saves the ~4 s of imports
    a subprocess per recipe would cost."""
    import numpy as np
    from PIL import Image

    import run
    import solvers
    recipes = readme_recipes()
    (tmp_path / "my_samplers.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = tmp_path / "my_pngs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(folder / f"{i}.png")
    ran, seconds = [], {}
    try:
        for key, argv in recipes.items():
            number = key if isinstance(key, int) else int(key[:-1])
            if number in SKIPPED:
                continue
            assert argv[:2] == ["python", "run.py"], argv
            argv = [a.replace("runs/", str(tmp_path) + "/").replace("data.path=my_pngs", f"data.path={folder}")
                    .replace("checkpoint=checkpoint_8.pth", f"checkpoint={FIXTURE}")
                    .replace("FEATURES", str(tmp_path / "features")) for a in argv[2:] + TINY + EXTRA.get(key, [])]
            t0 = time.perf_counter()
            code = run.main(argv)
            out, err = capsys.readouterr()
            seconds[key] = round(time.perf_counter() - t0, 1)
            assert code == 0, f"recipe {key}: {' '.join(argv)}\n{out[-2000:]}\n{err[-2000:]}"
            assert "next: " in out, f"recipe {key} printed no next-command hint"
            ran.append(key)
            if number == 9:
                assert "resuming from step 2" in out, out
    finally:
        if "my_euler" in solvers.SAMPLERS:
            solvers.unregister_sampler("my_euler")
        sys.modules.pop("my_samplers", None)
    assert len(ran) == 11, ran          # 1-7 with 6b (CFG sampling), 9, 10 and 10b (plugin)
    assert "10b" in ran and 10 in ran, ran
    print("recipe seconds:", seconds)


def test_quickstart_test_line_is_what_ci_runs():
    """The README's second Quickstart line is exactly the last line of .ci/run, and every
    relative link of the README points at a file that exists."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    quick = fenced_blocks(text[text.index("## Install and Quickstart"):], "bash")[0][1].splitlines()
    ci = [ln for ln in open(os.path.join(ROOT, ".ci", "run")).read().splitlines() if ln.strip()]
    assert len(quick) == 2 and quick[1] == ci[-1], (quick, ci[-1])
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert os.path.exists(os.path.join(ROOT, target)), f"README links to missing {target}"
    assert len(text.splitlines()) <= 200
