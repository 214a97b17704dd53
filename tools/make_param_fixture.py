"""Make `tests/data/param_compat/`: tiny run directories trained by the code of main before the
parameterisation object existed, with the samples and losses that code gave.

`tests/test_param_compat.py` restores these run directories with the current code and asserts
bit-identical samples, held-out losses and training losses: a saved run directory (whose config
has no `model.prediction` / `model.label` / `model.data_range`) must behave exactly as before.

Run from the worktree root, on the commit whose behaviour is to be frozen (the run directories
were made on main at 75b3065; expected.pt was re-recorded with `record` on main at e1ceea9,
after a reorganised DPM-Solver++(2M) moved only the VP dpmpp_2m samples, by float32 rounding):

    OMP_NUM_THREADS=1 python tools/make_param_fixture.py

Not run in CI. It overwrites `tests/data/param_compat/`. CPU, 1 thread, about 20 s.
"""
from __future__ import annotations

import os
import shutil
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import run  # noqa: E402
import solvers  # noqa: E402
from models import get_score_fn  # noqa: E402
from runner.rundir import load_saved_config  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from training import get_dataset, get_loss_fn  # noqa: E402
from training.loop import restore_model  # noqa: E402
from training.monitor import Monitor  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "param_compat")

# (run name, sde name, training.continuous): VP/sub-VP/VE continuous, VP/VE discrete (DDPM/SMLD)
RUNS = [("vp", "vpsde", True), ("subvp", "subvpsde", True), ("ve", "vesde", True),
        ("vp_discrete", "vpsde", False), ("ve_discrete", "vesde", False)]

# (key, sampler, options): every sampler family that reads the SDE's parameterisation or chains
SAMPLES = [
    ("euler_maruyama", "euler_maruyama", {}),
    ("pc_rd_langevin", "pc", dict(predictor="reverse_diffusion", corrector="langevin", snr=0.16)),
    ("pc_ancestral", "pc", dict(predictor="ancestral", corrector="none")),
    ("pc_pflow_langevin", "pc", dict(predictor="probability_flow", corrector="langevin", snr=0.1)),
    ("annealed_langevin", "annealed_langevin", {}),
    ("ddim", "ddim", {}),
    ("dpmpp_2m", "dpmpp_2m", {}),
    ("unipc", "unipc", {}),
]
STEPS, NUM = 8, 16
ARGS = ["--config.training.num_threads=1", "--config.training.progress=False",
        "--config.data.num_train=256", "--config.data.num_test=64",
        "--config.model.hidden=16", "--config.model.num_blocks=1", "--config.model.embed_dim=16",
        "--config.training.n_iters=30", "--config.training.batch_size=64",
        "--config.training.snapshot_freq=30", "--config.training.keep=1"]


def record(workdir):
    """The numbers the test recomputes: samples per sampler, held-out and training losses."""
    config = load_saved_config(workdir)
    sde = get_sde(config)
    model, _, _ = restore_model(config, workdir, use_ema=True)
    score_fn = get_score_fn(sde, model)
    out = {}
    for key, sampler, options in SAMPLES:
        x, _ = solvers.sample(sde, score_fn, (NUM, 2), sampler, steps=STEPS, seeds=range(NUM),
                              denoise=True, **options)
        out[f"sample/{key}"] = x
    dataset = get_dataset(config)
    config.training.eval_num_samples = 64
    mon = Monitor(config, sde, dataset, types.SimpleNamespace(model=model), torch.device("cpu"), workdir)
    out["heldout"] = torch.tensor(mon.heldout_loss(), dtype=torch.float64)
    train_model, _, _ = restore_model(config, workdir, use_ema=False)
    loss_fn = get_loss_fn(sde, config.training.continuous)
    x0 = dataset.train[:64]
    out["train_loss"] = loss_fn(get_score_fn(sde, train_model, train=True), x0,
                                torch.Generator().manual_seed(5)).detach()
    return out


def main():
    torch.set_num_threads(1)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    expected = {}
    for name, sde_name, continuous in RUNS:
        wd = os.path.join(OUT, name)
        rc = run.main(["--config", os.path.join(ROOT, "configs", "toy_vp_mlp.py"), "--workdir", wd,
                       "--mode", "train", f"--config.sde.name={sde_name}",
                       f"--config.training.continuous={continuous}"] + ARGS)
        assert rc == 0, name
        for entry in os.listdir(wd):          # keep the saved config and the one checkpoint only
            if entry not in ("config.py", "checkpoints"):
                p = os.path.join(wd, entry)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        for k, v in record(wd).items():
            expected[f"{name}/{k}"] = v
    torch.save(expected, os.path.join(OUT, "expected.pt"))
    print(f"wrote {OUT}: {len(expected)} arrays")


if __name__ == "__main__":
    main()
