"""`--mode import` of published checkpoint formats, matched against the reference code's own outputs.

The fixtures under tests/data/pretrained/ were made by score_sde_pytorch's and diffusers' code with
random weights (tools/make_pretrained_fixtures.py, run by hand: it needs the reference code).
Each is imported with the config of its published family (configs/pretrained/) shrunk by
command-line overrides to the fixture's size, then `runner.load_run` gives the score.
"""
import json
import math
import os

import pytest
import torch

import run
from runner import load_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "pretrained")
MANIFEST = json.load(open(os.path.join(DATA, "manifest.json")))

# fixture -> (published config it is a small instance of)
SCORE_SDE = {
    "score_sde_ve_ncsnpp": "ve_cifar10_ncsnpp_continuous",
    "score_sde_ve_ncsnpp_pyramids": "ve_church_ncsnpp_continuous",
    "score_sde_vp_ddpmpp": "vp_cifar10_ddpmpp_continuous",
    "score_sde_subvp_ddpm": "subvp_cifar10_ddpm_continuous",
}


def _overrides(m):
    return [f"--config.model.nf={m['nf']}", f"--config.model.ch_mult={tuple(m['ch_mult'])}",
            f"--config.model.num_res_blocks={m['num_res_blocks']}",
            f"--config.model.attn_resolutions={tuple(m['attn_resolutions'])}",
            f"--config.data.image_size={m['image_size']}"]


def _import(workdir, config, checkpoint, *extra):
    return run.main(["--mode", "import", "--config", os.path.join(ROOT, "configs", "pretrained", f"{config}.py"),
                     "--workdir", str(workdir), f"--config.pretrained.checkpoint={checkpoint}",
                     "--config.training.num_threads=1", *extra])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _config(name, *overrides):
    """A published config with `--config.a.b=v` style overrides (as run.py applies them)."""
    from runner.config_io import apply_override, load_config
    config = load_config(os.path.join(ROOT, "configs", "pretrained", f"{name}.py"))
    for o in overrides:
        key, val = o[len("--config."):].split("=", 1)
        apply_override(config, key, val)
    return config


def _reference_score(r, out, m, which):
    x, t = out["x"], out["t"]
    with torch.no_grad():
        if m["centered"]:                   # data in [-1, 1]: the same units
            score = r.score_fn(x, t)
        else:                               # the reference's [0, 1] data: x' = 2x - 1, score_x = 2 score_x'
            score = 2 * r.score_fn(2 * x - 1, t)
    return _rel(score, out[f"{which}_score"])


def test_cli_import_of_ve_ncsnpp_matches_the_reference_score(tmp_path):
    """End to end: run.py --mode import, then runner.load_run (model and EMA weights)."""
    fixture = "score_sde_ve_ncsnpp"
    m = MANIFEST[fixture]
    assert _import(tmp_path / "run", SCORE_SDE[fixture], os.path.join(DATA, f"{fixture}.pth"), *_overrides(m)) == 0
    out = torch.load(os.path.join(DATA, f"{fixture}.outputs.pt"), weights_only=True)
    for which in ("model", "ema"):
        r = load_run(str(tmp_path / "run"), ema=which == "ema")
        assert r.step == 1234 and r.shape == (3, 8, 8)
        assert _reference_score(r, out, m, which) <= 1e-5, which
        # the network alone, on the reference's own labels (sigma of [0, 1] data; its output is scaled by
        # 1/sigma inside): much closer than the score, whose label the two codes round differently
        sigma = out[f"{which}_label"]
        with torch.no_grad():
            net = r.model(out["x"], torch.log(sigma)) / sigma[:, None, None, None]
        assert _rel(net, out[f"{which}_net"]) <= 2e-6, which
    # the EMA and the raw weights differ, so the comparison above tells them apart
    assert _rel(out["ema_score"], out["model_score"]) > 1e-3


@pytest.mark.parametrize("fixture", sorted(set(SCORE_SDE) - {"score_sde_ve_ncsnpp"}))
def test_score_sde_import_matches_the_reference_score(fixture):
    """The importer's conversion (runner.importer.read_pretrained) for the other architectures and SDEs."""
    import types
    import models
    import sde_lib
    from runner.importer import read_pretrained
    m = MANIFEST[fixture]
    config = _config(SCORE_SDE[fixture], f"--config.pretrained.checkpoint={os.path.join(DATA, fixture + '.pth')}",
                     *_overrides(m))
    weights, ema_weights, step, _, _ = read_pretrained(config)
    assert step == 1234
    out = torch.load(os.path.join(DATA, f"{fixture}.outputs.pt"), weights_only=True)
    sde = sde_lib.get_sde(config)
    for which, sd in (("model", weights), ("ema", ema_weights)):
        net = models.get_model(config)
        net.load_state_dict(sd)
        r = types.SimpleNamespace(score_fn=models.get_score_fn(sde, net))
        assert _reference_score(r, out, m, which) <= 1e-5, which


def _ddpm_step_times(sde, k):
    """t_k with lambda(t_k) = lambda_k of DDPM's chain (VP linear beta: solve the quadratic in t)."""
    lam = sde.discrete_log_snrs()[k]
    log_m2 = -torch.log1p(torch.exp(-2 * lam))          # log alpha_bar_k
    b0, b1 = sde.beta_min, sde.beta_max                 # -log alpha_bar(t) = b0 t + (b1 - b0) t^2 / 2
    a, c = (b1 - b0) / 2, b0
    return (-c + torch.sqrt(c * c - 4 * a * log_m2)) / (2 * a), log_m2


DIFFUSERS_OVERRIDES = ("--config.model.nf=16", "--config.model.ch_mult=(1, 1)", "--config.model.num_res_blocks=1",
                       "--config.model.attn_resolutions=(4,)", "--config.data.image_size=8",
                       "--config.model.num_groups=8")


def _check_diffusers(model, score_fn, sde):
    out = torch.load(os.path.join(DATA, "diffusers_ddpm_tiny.outputs.pt"), weights_only=True)
    with torch.no_grad():
        net = model(out["x"], out["step"].float())
    assert _rel(net, out["net"]) <= 1e-5
    # the score at the time of step k: -eps(x, k) / sqrt(1 - alpha_bar_k)
    t, log_m2 = _ddpm_step_times(sde, out["step"])
    want = -out["net"] / torch.sqrt(-torch.expm1(log_m2)).float()[:, None, None, None]
    with torch.no_grad():
        score = score_fn(out["x"], t.float())
    assert _rel(score, want) <= 1e-5


def test_cli_import_of_diffusers_bin_matches_the_reference(tmp_path):
    src = os.path.join(DATA, "diffusers_ddpm_tiny", "diffusion_pytorch_model.bin")
    assert _import(tmp_path / "run", "google_ddpm_cifar10_32", src, *DIFFUSERS_OVERRIDES) == 0
    r = load_run(str(tmp_path / "run"))
    _check_diffusers(r.model, r.score_fn, r.sde)


@pytest.mark.parametrize("what", ["diffusion_pytorch_model.safetensors", "."])
def test_diffusers_safetensors_and_folder(what):
    pytest.importorskip("safetensors")
    import models
    import sde_lib
    from runner.importer import read_pretrained
    src = os.path.normpath(os.path.join(DATA, "diffusers_ddpm_tiny", what))
    config = _config("google_ddpm_cifar10_32", f"--config.pretrained.checkpoint={src}", *DIFFUSERS_OVERRIDES)
    weights, ema_weights, step, _, path = read_pretrained(config)
    assert path.endswith("diffusion_pytorch_model.safetensors") and step == 0
    net = models.get_model(config)
    net.load_state_dict(ema_weights)
    sde = sde_lib.get_sde(config)
    _check_diffusers(net, models.get_score_fn(sde, net), sde)


# ---- bad input: one error line, nothing left behind ------------------------------------------------

def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_wrong_format_is_named(tmp_path, capsys):
    bin_file = os.path.join(DATA, "diffusers_ddpm_tiny", "diffusion_pytorch_model.bin")
    assert _import(tmp_path / "a", "vp_cifar10_ddpmpp_continuous", bin_file) == 2
    assert "a bare state dict" in _error(capsys) and not (tmp_path / "a").exists()
    pth = os.path.join(DATA, "score_sde_vp_ddpmpp.pth")
    assert _import(tmp_path / "b", "google_ddpm_cifar10_32", pth) == 2
    assert "expected a diffusers UNet2DModel state dict" in _error(capsys) and not (tmp_path / "b").exists()


def test_shape_mismatch_names_the_first_key_and_both_shapes(tmp_path, capsys):
    m = dict(MANIFEST["score_sde_vp_ddpmpp"])
    m["nf"] = 16                                      # the checkpoint has nf = 8
    pth = os.path.join(DATA, "score_sde_vp_ddpmpp.pth")
    assert _import(tmp_path / "a", "vp_cifar10_ddpmpp_continuous", pth, *_overrides(m)) == 2
    line = _error(capsys)
    assert "shape mismatch at 'all_modules.0.weight': the checkpoint has (32, 8)" in line
    assert "expects (64, 16)" in line and not (tmp_path / "a").exists()


def test_truncated_and_missing_files(tmp_path, capsys):
    pth = os.path.join(DATA, "score_sde_vp_ddpmpp.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(open(pth, "rb").read()[:100_000])
    ov = _overrides(MANIFEST["score_sde_vp_ddpmpp"])
    assert _import(tmp_path / "a", "vp_cifar10_ddpmpp_continuous", cut, *ov) == 2
    assert "truncated or corrupted" in _error(capsys) and not (tmp_path / "a").exists()
    pytest.importorskip("safetensors")
    st = os.path.join(DATA, "diffusers_ddpm_tiny", "diffusion_pytorch_model.safetensors")
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(open(st, "rb").read()[:50_000])
    assert _import(tmp_path / "b", "google_ddpm_cifar10_32", cut_st) == 2
    assert "truncated or corrupted" in _error(capsys) and not (tmp_path / "b").exists()
    assert _import(tmp_path / "c", "vp_cifar10_ddpmpp_continuous", tmp_path / "nope.pth") == 2
    assert "does not exist" in _error(capsys) and not (tmp_path / "c").exists()


def test_import_never_writes_into_an_existing_run(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("mine")
    pth = os.path.join(DATA, "score_sde_vp_ddpmpp.pth")
    assert _import(tmp_path / "a", "vp_cifar10_ddpmpp_continuous", pth,
                   *_overrides(MANIFEST["score_sde_vp_ddpmpp"])) == 2
    assert "exists and is not empty" in _error(capsys)
    assert os.listdir(tmp_path / "a") == ["keep.txt"]


def test_sample_runs_unchanged_on_an_imported_model(tmp_path, capsys):
    pth = os.path.join(DATA, "score_sde_vp_ddpmpp.pth")
    assert _import(tmp_path / "run", "vp_cifar10_ddpmpp_continuous", pth,
                   *_overrides(MANIFEST["score_sde_vp_ddpmpp"])) == 0
    assert run.main(["--mode", "sample", "--workdir", str(tmp_path / "run"), "--config.sampling.steps=4",
                     "--config.sampling.num_samples=4", "--config.training.progress=False",
                     "--config.training.num_threads=1"]) == 0
    npz = capsys.readouterr().out.strip().splitlines()[-1]
    import numpy as np
    samples = np.load(npz)["samples"]
    assert samples.shape == (4, 3, 8, 8) and np.isfinite(samples).all()
    assert "step000001234-euler_maruyama" in npz
