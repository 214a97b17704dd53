"""run.py end to end on latents (tiny): train_autoencoder (exact resume), a latent score model whose scale
factor is estimated and saved, samples decoded to the data's levels, the eval bound, and the bad inputs."""
import json
import os
import re

import numpy as np
import pytest
import torch

import run
from test_cli import latest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AE = os.path.join(ROOT, "configs", "digits_autoencoder.py")
LATENT = os.path.join(ROOT, "configs", "digits_latent_vp.py")
TINY = ["--config.training.num_threads=1", "--config.training.progress=False", "--config.autoencoder.nf=8",
        "--config.training.batch_size=16", "--config.training.eval_freq=4", "--config.training.eval_num_samples=32"]
TINY_SCORE = ["--config.training.num_threads=1", "--config.training.progress=False", "--config.model.nf=8",
              "--config.model.num_groups=4", "--config.training.n_iters=3", "--config.training.batch_size=16",
              "--config.sampling.steps=3", "--config.sampling.num_samples=6"]


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("ae") / "ae")
    assert run.main(["--config", AE, "--workdir", wd, "--mode", "train_autoencoder", "--config.training.n_iters=8",
                     "--config.training.snapshot_freq=4"] + TINY) == 0
    return wd


def test_autoencoder_resumes_exactly(ae_run, tmp_path):
    wd = str(tmp_path / "ae2")
    assert run.main(["--config", AE, "--workdir", wd, "--mode", "train_autoencoder", "--config.training.n_iters=4"]
                    + TINY) == 0
    assert run.main(["--workdir", wd, "--mode", "train_autoencoder", "--config.training.n_iters=8"] + TINY) == 0
    a = torch.load(os.path.join(ae_run, "checkpoints", "checkpoint_000000008.pt"), weights_only=True)
    b = torch.load(os.path.join(wd, "checkpoints", "checkpoint_000000008.pt"), weights_only=True)
    for k, v in a["ema"]["model"].items():
        assert torch.equal(v, b["ema"]["model"][k]), k
    rows = [json.loads(line) for line in open(os.path.join(ae_run, "metrics.jsonl"))]
    assert [r["step"] for r in rows if "eval_loss" in r] == [4, 8]          # held-out loss of the EMA model
    info = json.load(open(os.path.join(ae_run, "autoencoder.json")))
    assert info["latent_shape"] == [2, 4, 4] and info["num_levels"] == 17


def test_latent_run_trains_samples_and_evals_on_latents(ae_run, tmp_path, capsys):
    wd = str(tmp_path / "lat")
    base = ["--config", LATENT, "--workdir", wd, f"--config.data.autoencoder={ae_run}"] + TINY_SCORE
    assert run.main(base + ["--mode", "train"]) == 0
    saved = json.load(open(os.path.join(wd, "latent.json")))
    cache = torch.load(os.path.join(ae_run, "latents", saved["autoencoder_hash"] + ".pt"), weights_only=True)
    assert math_close(saved["scale"], 1.0 / cache["train"].double().std().item())      # estimated, saved
    assert run.main(["--workdir", wd, "--mode", "sample"] + TINY_SCORE[:2] + TINY_SCORE[-2:]) == 0
    z = np.load(latest(wd, "samples", "samples.npz"))
    assert z["samples"].shape == (6, 1, 8, 8) and z["latents"].shape == (6, 2, 4, 4)
    levels = (z["samples"] + 1) * 17 / 2 - 0.5
    assert np.allclose(levels, np.round(levels), atol=1e-5) and levels.min() >= 0 and levels.max() <= 16
    assert run.main(["--workdir", wd, "--mode", "eval", "--config.eval.num_samples=4", "--config.eval.repeats=2",
                     "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2"] + TINY_SCORE[:2]) == 0
    rep = json.load(open(latest(wd, "eval", "eval.json")))
    t = rep["terms"]
    assert rep["posterior_samples"] == 2 and rep["num_examples"] == 4
    total = t["rec"]["bits_per_dim"] + t["log_q"]["bits_per_dim"] + t["neg_log_pz"]["bits_per_dim"]
    assert math_close(rep["bits_per_dim"], total) and rep["scale"] == saved["scale"]
    # the saved scale is the run's: a changed one that is 0 or not finite is refused before any work
    for bad in (0.0, float("nan")):
        json.dump(dict(saved, scale=bad), open(os.path.join(wd, "latent.json"), "w"))
        capsys.readouterr()
        assert run.main(["--workdir", wd, "--mode", "sample"] + TINY_SCORE[:2]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(r"error: latent scale factor .* must be a finite number > 0", err)


@pytest.mark.slow
def test_latent_compare_and_inpaint(ae_run, tmp_path):
    wd = str(tmp_path / "lat")
    assert run.main(["--config", LATENT, "--workdir", wd, f"--config.data.autoencoder={ae_run}", "--mode", "train"]
                    + TINY_SCORE) == 0
    # compare and inpaint on latents: decoded samples judged in the pixel feature space; observed pixels kept
    assert run.main(["--workdir", wd, "--mode", "compare", "--config.compare.samplers=ddim", "--config.compare.nfe=(3,)",
                     "--config.compare.seeds=(0, 1)", "--config.compare.num_samples=20", "--config.compare.feature_epochs=1",
                     f"--config.compare.feature_cache={tmp_path / 'feat'}", "--config.compare.progress=False"]
                    + TINY_SCORE[:2]) == 0
    rep = json.load(open(latest(wd, "compare", "compare.json")))
    assert "ddim" in json.dumps(rep) and "floor" in json.dumps(rep)
    assert run.main(["--workdir", wd, "--mode", "inpaint", "--config.inpaint.steps=3", "--config.inpaint.num_images=3",
                     "--config.inpaint.sampler=ddim"] + TINY_SCORE[:2]) == 0
    rep = json.load(open(latest(wd, "inpaint", "inpaint.json")))
    assert rep["known_exact"] and rep["num_images"] == 3 and rep["options"]["latent_mask_observed"] == 8


def math_close(a, b):
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def test_latent_bad_inputs(ae_run, tmp_path, capsys):
    wd = str(tmp_path / "bad")
    cases = [
        ([f"--config.data.autoencoder={tmp_path / 'nowhere'}"], r"data.autoencoder=.*nowhere.* is not a directory"),
        ([f"--config.data.autoencoder={tmp_path}"], r"holds no autoencoder.json"),
        ([f"--config.data.autoencoder={ae_run}", "--config.data.dataset=fashion_mnist"],
         r"was trained on other data: data.dataset='fashion_mnist' \(autoencoder: 'digits'\)"),
        ([f"--config.data.autoencoder={ae_run}", "--config.data.num_channels=3"],
         r"gives latents of shape \(2, 4, 4\), but the config says data.num_channels=3"),
        (["--config.data.autoencoder="], r"data set 'digits' has images of shape \(1, 8, 8\)"),
    ]
    for flags, message in cases:
        assert run.main(["--config", LATENT, "--workdir", wd, "--mode", "train"] + TINY_SCORE + flags) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err), err
        assert not os.path.exists(wd)
    assert run.main(["--config", LATENT, "--workdir", wd, "--mode", "colorize", f"--config.data.autoencoder={ae_run}"]
                    + TINY_SCORE) == 2
    assert "not implemented for latent runs yet" in capsys.readouterr().err
    # prompts on a latent run: the prompt attributes would be computed on latents, so it is refused
    assert run.main(["--config", LATENT, "--workdir", wd, "--mode", "train", f"--config.data.autoencoder={ae_run}",
                     "--config.model.text_vocab_size=64", "--config.model.cross_attn_resolutions=(4,)"] + TINY_SCORE) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "prompts (model.text_vocab_size=64" in err and "latent runs" in err, err
    assert not os.path.exists(wd)


@pytest.mark.slow
def test_latent_eval_is_the_same_with_1_and_2_processes(ae_run, tmp_path):
    """torchrun deals the bound's batches over the ranks (each batch drawing from its own generator) and
    rank 0 gathers the rows: the report equals one process's, with every rank doing only its batches."""
    from tests.test_distributed import torchrun
    wd = str(tmp_path / "lat")
    assert run.main(["--config", LATENT, "--workdir", wd, f"--config.data.autoencoder={ae_run}", "--mode", "train"]
                    + TINY_SCORE) == 0
    opts = ["--mode", "eval", "--config.eval.num_samples=5", "--config.eval.batch_size=2", "--config.eval.repeats=2",
            "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2"] + TINY_SCORE[:2]
    assert run.main(["--workdir", wd] + opts) == 0
    one = json.load(open(latest(wd, "eval", "eval.json")))
    torchrun(2, "--workdir", wd, *opts)
    two = json.load(open(latest(wd, "eval", "eval.json")))
    assert one.get("world_size") == 1 and two["world_size"] == 2 and two["num_examples"] == 5
    assert one["batches_per_rank"] == [3] and two["batches_per_rank"] == [2, 1]     # rank 0: rows 0-1, 4; rank 1: 2-3
    for k in ("bits_per_dim", "stderr"):
        assert two[k] == pytest.approx(one[k], rel=1e-12, abs=1e-12), k
    for k, v in one["terms"].items():
        assert two["terms"][k]["bits_per_dim"] == pytest.approx(v["bits_per_dim"], rel=1e-12, abs=1e-12), k
    assert two["nfe"] == one["nfe"]          # batched score calls summed over ranks: the same work, not twice


def test_class_conditional_latent_run_guides_its_latents_and_decodes_them(ae_run, tmp_path):
    """A class-conditional latent run (labels from the pixel data set): the label reaches the net (two
    classes give other latents on the same seeds), CFG at w = 0 is the plain conditional sample bit for bit,
    and the saved pixels are exactly the decoded saved latents."""
    from runner.latent import load_codec
    from runner.rundir import load_saved_config
    wd = str(tmp_path / "cond")
    assert run.main(["--config", LATENT, "--workdir", wd, f"--config.data.autoencoder={ae_run}", "--mode", "train",
                     "--config.model.num_classes=10", "--config.training.label_dropout=0.2", "--config.training.lr=0.01",
                     "--config.training.warmup=0"] + TINY_SCORE) == 0     # the label table starts at zero: move it

    def draw(label, guidance, w=0.0):
        assert run.main(["--workdir", wd, "--mode", "sample", f"--config.sampling.class_label={label}",
                         f"--config.sampling.guidance={guidance}", f"--config.sampling.guidance_scale={w}",
                         "--config.sampling.sampler=ddim", "--config.sampling.use_ema=False"]
                        + TINY_SCORE[:2] + TINY_SCORE[-2:]) == 0
        z = np.load(latest(wd, "samples", "samples.npz"))
        return z["latents"], z["samples"], z["labels"]

    u3, x3, y3 = draw(3, "none")
    u3c, _, _ = draw(3, "cfg", 0.0)
    u5, _, y5 = draw(5, "cfg", 0.0)
    u3g, x3g, _ = draw(3, "cfg", 2.0)
    assert (y3 == 3).all() and (y5 == 5).all() and u3.shape == (6, 2, 4, 4)
    assert np.array_equal(u3, u3c)                                    # w = 0: the conditional score itself
    assert np.abs(u3 - u5).max() > 1e-4 and np.abs(u3 - u3g).max() > 1e-4
    codec = load_codec(load_saved_config(wd), wd)
    with torch.no_grad():
        x = codec.decode(torch.from_numpy(u3g)).numpy()
    assert np.allclose(x, x3g, atol=1e-6)                             # pixels = D(u / s), quantised
