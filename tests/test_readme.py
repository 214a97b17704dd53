"""The README's sde_lib snippet runs as written (it once used `g` for the diffusion and then as a generator)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sde_lib_snippet_runs():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("## SDEs"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md (sde_lib snippet)", "exec"), scope)
    assert scope["drift"].shape == (8, 2) and scope["diffusion"].shape == (8,) and scope["z"].shape == (8, 2)
