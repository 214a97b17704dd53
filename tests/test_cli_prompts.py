"""run.py with prompts end to end on tiny settings: train (vocab.json), sample with a prompt and CFG,
train_contrastive and contrastive guidance, and the errors (unknown words before any work)."""
import json
import os
import re

import numpy as np
import pytest

import run
from test_cli import latest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = os.path.join(ROOT, "configs", "digits_prompts_vp_ddpmpp.py")
TINY = ["--config.training.num_threads=1", "--config.training.progress=False", "--config.model.nf=8",
        "--config.model.num_groups=4", "--config.training.n_iters=3", "--config.training.batch_size=16",
        "--config.model.text.dim=16", "--config.model.text.depth=1", "--config.sampling.steps=3",
        "--config.sampling.num_samples=4", "--config.contrastive.nf=8", "--config.contrastive.n_iters=3",
        "--config.contrastive.batch_size=16", "--config.contrastive.text_dim=16", "--config.contrastive.text_depth=1"]


def test_prompt_pipeline(tmp_path, capsys):
    wd = str(tmp_path / "p")
    assert run.main(["--config", PROMPTS, "--workdir", wd, "--mode", "train"] + TINY) == 0
    vocab = json.load(open(os.path.join(wd, "vocab.json")))
    assert "seven" in vocab["vocabulary"] and vocab["held_out"] == ["seven:thick", "three:thin", "four:right"]
    prompt = "--config.sampling.prompt=a thick seven leaning right"
    for g in ("none", "cfg"):
        assert run.main(["--workdir", wd, "--mode", "sample", prompt, f"--config.sampling.guidance={g}",
                         "--config.sampling.guidance_scale=3"] + TINY[3:]) == 0
        info = json.load(open(latest(wd, "samples", "sample.json")))
        assert info["guidance"] == g and info["prompt"] == "a thick seven leaning right" and info["finite"]
        assert np.load(latest(wd, "samples", "samples.npz"))["samples"].shape == (4, 1, 8, 8)
    assert run.main(["--workdir", wd, "--mode", "train_contrastive"] + TINY[3:]) == 0
    assert os.path.exists(os.path.join(wd, "contrastive", "contrastive.json"))
    assert run.main(["--workdir", wd, "--mode", "sample", prompt, "--config.sampling.guidance=contrastive"]
                    + TINY[3:]) == 0
    assert json.load(open(latest(wd, "samples", "sample.json")))["guidance"] == "contrastive"
    # unknown words: one error line naming them and the vocabulary file, nothing written
    before = sorted(os.listdir(os.path.join(wd, "samples")))
    capsys.readouterr()
    assert run.main(["--workdir", wd, "--mode", "sample", "--config.sampling.prompt=a purple seven leaning up",
                     "--config.sampling.guidance=cfg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "['purple', 'up']" in err[0] and os.path.join(wd, "vocab.json") in err[0]
    assert sorted(os.listdir(os.path.join(wd, "samples"))) == before


@pytest.mark.parametrize("flags,message", [
    (["--config.sampling.guidance=cfg"], r"config.sampling.prompt must be a prompt with sampling.guidance='cfg'"),
    (["--config.sampling.prompt=a seven", "--config.sampling.guidance=classifier"],
     r"config.sampling.guidance must be one of \['none', 'cfg', 'contrastive'\] with prompts"),
    (["--config.sampling.class_label=3"], r"config.sampling.class_label must be 'none' with prompts"),
    (["--config.model.text_vocab_size=10"], r"config.model.text_vocab_size must be >= \d+, the size of the vocabulary"),
    (["--config.prompts.held_out=('seven:purple',)"], r"config.prompts.held_out must be entries 'class:bin'"),
    (["--config.prompts.templates=('a {colour} {class}',)"], r"config.prompts.templates must be a template"),
    (["--config.model.num_classes=10"], r"config.model.num_classes must be 0 for a prompt-conditional net"),
])
def test_prompt_config_errors(flags, message, tmp_path, capsys):
    assert run.main(["--config", PROMPTS, "--workdir", str(tmp_path / "x"), "--mode", "sample"] + flags) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not os.path.exists(tmp_path / "x")


def test_prompt_on_a_net_without_prompts_is_refused(tmp_path, capsys):
    assert run.main(["--workdir", str(tmp_path / "x"), "--mode", "sample", "--config.sampling.prompt=a seven"]) == 2
    assert "config.sampling.prompt must be '' for a net without prompts" in capsys.readouterr().err
