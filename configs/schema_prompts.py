"""Schema of the prompt fields: `model.text_vocab_size` / `cross_attn_resolutions` / `text`,
`config.prompts`, `config.contrastive` and the prompt side of `sampling` (`prompt`, guidance
"cfg" over the empty prompt, "contrastive"). Called from `configs.schema` (its `SECTIONS` and
`_validate_guidance`); raises `ConfigError(field, value, expected)`.
"""
from __future__ import annotations

from training.prompts import ATTRIBUTES, CLASS_NAMES, UnknownWords, prompt_spec, uses_prompts

from .errors import ConfigError

IMAGE_ENCODERS = ("encoder", "mlp")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_prompt_model(config) -> None:
    """The text encoder fields; with text_vocab_size > 0, the config's vocabulary and longest prompt fit."""
    m = config.model
    V = m.get("text_vocab_size", 0)
    if not _int(V) or V < 0:
        raise ConfigError("model.text_vocab_size", V, "an int >= 0 (0: no prompts)")
    res = m.get("cross_attn_resolutions", ())
    if not isinstance(res, tuple) or not all(_int(r) and r >= 1 for r in res):
        raise ConfigError("model.cross_attn_resolutions", res, "a tuple of resolutions, e.g. (4,)")
    if not V:
        if res:
            raise ConfigError("model.text_vocab_size", V, "> 0 with model.cross_attn_resolutions set")
        return
    if not res:
        raise ConfigError("model.cross_attn_resolutions", res, "a non-empty tuple with model.text_vocab_size > 0")
    if m.num_classes:
        raise ConfigError("model.num_classes", m.num_classes, "0 for a prompt-conditional net (the class is "
                                                              "in the prompt)")
    for name in ("dim", "depth", "heads", "max_len", "cross_attn_heads"):
        if not _int(m.text[name]) or m.text[name] < (0 if name == "depth" else 1):
            raise ConfigError(f"model.text.{name}", m.text[name], "an int >= 1" if name != "depth" else "an int >= 0")
    validate_prompts(config)
    spec = prompt_spec(config)
    if len(spec.vocab) > V:
        raise ConfigError("model.text_vocab_size", V, f">= {len(spec.vocab)}, the size of the vocabulary "
                                                      f"config.prompts builds")
    if spec.max_len > m.text.max_len:
        raise ConfigError("model.text.max_len", m.text.max_len, f">= {spec.max_len}, the longest prompt")


def validate_prompts(config) -> None:
    """config.prompts for the data set (only when prompts are used: a text model or contrastive guidance)."""
    if not (uses_prompts(config) or config.sampling.guidance == "contrastive"):
        return
    p = config.prompts
    if config.data.dataset not in CLASS_NAMES:
        raise ConfigError("data.dataset", config.data.dataset, f"a data set with prompt attributes "
                                                               f"({sorted(CLASS_NAMES)}) for prompts")
    if not isinstance(p.attributes, tuple) or not all(a in ATTRIBUTES for a in p.attributes) \
            or len(set(p.attributes)) != len(p.attributes):
        raise ConfigError("prompts.attributes", p.attributes, f"a tuple of distinct names among {sorted(ATTRIBUTES)}")
    if not isinstance(p.templates, tuple) or not p.templates or not all(isinstance(t, str) for t in p.templates):
        raise ConfigError("prompts.templates", p.templates, "a non-empty tuple of template strings")
    if not isinstance(p.held_out, tuple):
        raise ConfigError("prompts.held_out", p.held_out, "a tuple of 'class:bin' strings")
    prompt_spec(config)      # checks slots and held-out entries


def validate_contrastive(config) -> None:
    c = config.contrastive
    if c.image_encoder not in IMAGE_ENCODERS:
        raise ConfigError("contrastive.image_encoder", c.image_encoder, f"one of {list(IMAGE_ENCODERS)}")
    for name in ("embed_dim", "nf", "num_res_blocks", "hidden", "num_blocks", "text_dim", "text_heads", "n_iters",
                 "batch_size"):
        if not _int(c[name]) or c[name] < 1:
            raise ConfigError(f"contrastive.{name}", c[name], "an int >= 1")
    if not _int(c.text_depth) or c.text_depth < 0:
        raise ConfigError("contrastive.text_depth", c.text_depth, "an int >= 0")
    if c.text_dim % c.text_heads:
        raise ConfigError("contrastive.text_heads", c.text_heads, f"a divisor of contrastive.text_dim = {c.text_dim}")
    if not isinstance(c.lr, (int, float)) or isinstance(c.lr, bool) or not c.lr > 0:
        raise ConfigError("contrastive.lr", c.lr, "a number > 0")
    if not _int(c.seed) or c.seed < 0:
        raise ConfigError("contrastive.seed", c.seed, "an int >= 0")
    if not isinstance(c.dir, str) or not c.dir:
        raise ConfigError("contrastive.dir", c.dir, "a non-empty folder name")


def validate_prompt_guidance(config, label) -> bool:
    """The prompt side of sampling; True when it decided (prompt nets, contrastive guidance)."""
    s = config.sampling
    prompt = s.get("prompt", "")
    if not isinstance(prompt, str):
        raise ConfigError("sampling.prompt", prompt, "a string")
    text, g = uses_prompts(config), s.guidance
    if not text and g != "contrastive":
        if prompt.strip():
            raise ConfigError("sampling.prompt", prompt, "'' for a net without prompts (model.text_vocab_size = 0), "
                                                         "or sampling.guidance='contrastive'")
        return False
    if label is not None:
        raise ConfigError("sampling.class_label", s.class_label, "'none' with prompts (the class is in "
                                                                 "sampling.prompt)")
    allowed = ("none", "cfg", "contrastive") if text else ("contrastive",)
    if g not in allowed:
        raise ConfigError("sampling.guidance", g, f"one of {list(allowed)} with prompts")
    if g != "none" and not prompt.strip():
        raise ConfigError("sampling.prompt", prompt, f"a prompt with sampling.guidance={g!r}")
    return True


def check_prompt_words(config, vocabulary_file: str) -> None:
    """UnknownWords (one line: the words, the vocabulary file) if sampling.prompt has words outside it."""
    spec = prompt_spec(config)
    bad = spec.unknown(config.sampling.prompt)
    if bad:
        raise UnknownWords(f"config.sampling.prompt {config.sampling.prompt!r} has words not in the vocabulary "
                           f"{vocabulary_file}: {bad}")
