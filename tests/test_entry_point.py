"""`scoresde`, the console command beside `python run.py` (setup.cfg entry point)."""
import configparser
import importlib
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def entry_point():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    lines = [l.strip() for l in cfg["options.entry_points"]["console_scripts"].strip().splitlines()]
    return dict(tuple(p.strip() for p in l.split("=")) for l in lines)


def test_setup_cfg_declares_scoresde_and_it_resolves(capsys, tmp_path):
    target = entry_point()["scoresde"]
    module, func = target.split(":")
    fn = getattr(importlib.import_module(module), func)
    sys_argv = sys.argv
    try:
        sys.argv = ["scoresde", "--workdir", str(tmp_path / "w"), "--config.sde.name=foo"]
        with pytest.raises(SystemExit) as e:
            fn()
    finally:
        sys.argv = sys_argv
    assert e.value.code == 2 and capsys.readouterr().err.startswith("error: config.sde: unknown SDE name 'foo'")
    sys.argv, saved = ["scoresde", "--help"], sys.argv
    try:
        with pytest.raises(SystemExit) as e:
            fn()
    finally:
        sys.argv = saved
    assert e.value.code == 0 and "usage: scoresde" in capsys.readouterr().out


@pytest.mark.slow
def test_installed_console_script(tmp_path):
    """pip-installs the project (editable, no dependencies) into a fresh venv and runs `scoresde`."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-q", "-e", ROOT]
    subprocess.run(pip, check=True, timeout=600, cwd=str(tmp_path))
    exe = venv / "bin" / "scoresde"
    assert exe.exists()
    p = subprocess.run([str(exe), "--workdir", str(tmp_path / "w"), "--config.sde.name=foo"], capture_output=True,
                       text=True, timeout=300, cwd=str(tmp_path))
    assert p.returncode == 2 and p.stderr.startswith("error: config.sde: unknown SDE name 'foo'"), p.stderr
    assert shutil.which("scoresde", path=str(venv / "bin"))
