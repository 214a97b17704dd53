"""Prompts for `--mode sample` and `--mode train_contrastive` (docs/guide/prompts.md).

    sampling.prompt      "a thick seven leaning right" ("" = the empty prompt, the null condition)
    sampling.guidance    none: the prompt-conditional score; cfg: (1 + w) s(x | c) - w s(x | "") with
                         w = sampling.guidance_scale; contrastive: the score (of c for a prompt net, else the
                         unconditional net's) + guidance_scale * grad_x sim(x_t, t, c) of the contrastive
                         model in workdir/<contrastive.dir>/ (`--mode train_contrastive`)

The prompt's words are checked against the run's vocabulary file before any work (`check_prompt`).
"""
from __future__ import annotations

import os

import models
import solvers
from configs.schema_prompts import check_prompt_words
from models.contrastive import get_similarity_fn
from training.contrastive import contrastive_dir, restore_contrastive, train_contrastive
from training.prompts import VOCAB_FILE, load_vocabulary, prompt_spec, uses_prompts


def prompt_sampling(config) -> bool:
    return uses_prompts(config) or config.sampling.guidance == "contrastive"


def vocabulary_file(config, workdir) -> str:
    """The vocabulary the prompt is read with: the prompt net's (workdir/vocab.json), else the contrastive model's."""
    if uses_prompts(config):
        return load_vocabulary(workdir, config)[1]
    return os.path.join(contrastive_dir(config, workdir), VOCAB_FILE)


def check_prompt(config, workdir, mode) -> None:
    """One InputError naming the unknown words of sampling.prompt and the vocabulary file (sample, all)."""
    if mode in ("sample", "all") and prompt_sampling(config):
        check_prompt_words(config, vocabulary_file(config, workdir))


def prompt_score_fn(config, workdir, sde, model, device=None):
    """(score_fn, description) of `--mode sample` for sampling.prompt and sampling.guidance."""
    s = config.sampling
    spec = prompt_spec(config)
    tokens = spec.encode([s.prompt]).to(device)
    scale = float(s.guidance_scale)
    desc = {"prompt": s.prompt, "tokens": tokens[0].tolist(), "vocabulary": vocabulary_file(config, workdir),
            "guidance": s.guidance}
    if uses_prompts(config):
        cond = _batched(models.get_score_fn(sde, model), tokens)
        base = cond
        if s.guidance == "cfg":
            desc["w"] = scale
            return solvers.classifier_free_guidance(cond, models.get_score_fn(sde, model), scale), desc
    else:
        base = models.get_score_fn(sde, model)
    if s.guidance == "contrastive":
        net, _, ckpt = restore_contrastive(config, workdir)
        desc.update(scale=scale, contrastive=ckpt)
        return solvers.contrastive_guidance(base, get_similarity_fn(sde, net.to(device)), tokens[0], scale), desc
    return base, desc


def _batched(score_fn, tokens):
    """score_fn(x, t) with the prompt `tokens [1, L]` repeated over the batch."""
    def fn(x, t):
        return score_fn(x, t, y=tokens.expand(x.shape[0], -1))
    fn.sde, fn.model = score_fn.sde, score_fn.model
    return fn


def run_train_contrastive(config, workdir):
    net, report = train_contrastive(config, workdir, progress=config.training.progress)
    acc = ", ".join(f"t={t}: {v['accuracy']:.3f}" for t, v in report["test_retrieval_accuracy"].items())
    print(f"trained the contrastive model for {report['steps']} steps; test retrieval accuracy {acc} (chance "
          f"{report['chance']:.3f}); checkpoint: {report['checkpoint']}")
    return report
