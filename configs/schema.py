"""The config schema: every field of a run's config validated in one place, before any work.

One `validate_<section>(config)` per section of `configs/default.py` (defaults live there, once);
`validate_config(config)` runs them all. Each raises `ConfigError(field, value, expected)`, so a
bad value gives one line `error: config.<field> must be <expected>, got <value>`.

Names are checked against the registries (`sde_lib.get_sde`, `models.model_names`,
`training.data.DATASETS`, `solvers.SAMPLERS`, `evaluation.METRICS`, `solvers.MASKS`): a new
entry in a registry is a valid config value without touching this file.

Also here, because the config is where they are written: `parse_class_label`
(`sampling.class_label`) and the sampler entries of `compare.samplers` (`parse_sampler_entry`,
`resolve_samplers`, in `configs/sampler_entries.py`). A feature adds its own section's validator here and calls it from
`validate_config`.
"""
from __future__ import annotations

import math
import re

import torch

import models
import sde_lib
import solvers
from solvers.cold import ALGORITHMS as COLD_ALGORITHMS
from evaluation.metrics import METRICS
from models.autoencoder import FACTORS as AUTOENCODER_FACTORS
from models.convert import FORMATS as CHECKPOINT_FORMATS
from models.layers import FOURIER_PRODUCTS
from models.parameterization import DATA_RANGES, LABELS, PREDICTIONS, data_range_of
from models.unet import UNET_CHOICES
from training.data import DATASETS, declared_levels
from training.device import PRECISIONS, check_device_name

from .default import get_default_config
from .errors import ConfigError, InputError
from .sampler_entries import parse_sampler_entry, resolve_samplers  # noqa: F401 (public here too)
from .schema_prompts import validate_contrastive, validate_prompt_guidance, validate_prompt_model, validate_prompts

GUIDANCE = ("none", "classifier", "cfg", "universal", "contrastive")
ESTIMATORS = ("ode", "elbo", "both")
TRACES = ("exact", "hutchinson")
PIXEL_CONVENTIONS = ("levels", "score_sde")


# ---- field checks ---------------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def int_at_least(config, field: str, least: int) -> None:
    v = _get(config, field)
    if not _is_int(v) or v < least:
        raise ConfigError(field, v, f"an int >= {least}")


def boolean(config, field: str) -> None:
    v = _get(config, field)
    if not isinstance(v, bool):
        raise ConfigError(field, v, "True or False")


def number(config, field: str, lo=None, hi=None, lo_open=False, hi_open=False) -> None:
    """A finite number in [lo, hi] (open ends with lo_open / hi_open; None: unbounded)."""
    v = _get(config, field)
    ok = _is_num(v) and (lo is None or (v > lo if lo_open else v >= lo)) and \
        (hi is None or (v < hi if hi_open else v <= hi))
    if not ok:
        rng = f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}" \
              f"{')' if hi_open or hi is None else ']'}"
        raise ConfigError(field, v, f"a finite number in {rng}")


def one_of(config, field: str, choices) -> None:
    v = _get(config, field)
    if v not in choices:
        raise ConfigError(field, v, f"one of {sorted(choices)}")


def _get(config, field: str):
    node = config
    for k in field.split("."):
        node = node[k]
    return node


# ---- sections -------------------------------------------------------------------------------

def validate_run(config) -> None:
    """Top-level fields: seed, device."""
    int_at_least(config, "seed", 0)
    try:
        check_device_name(config.device)
    except ValueError:
        raise ConfigError("device", config.device, "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None


def validate_plugins(config) -> None:
    """`plugins`: a tuple of module names (run.py imports them before the other sections are checked)."""
    plugins = config.plugins
    if not isinstance(plugins, tuple) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError("plugins", plugins, "a tuple of module names, e.g. \"('my_samplers',)\"")
    for name in plugins:
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
            raise ConfigError("plugins", plugins, f"a tuple of module names ({name!r} is not one, e.g. 'my_samplers' "
                                                  f"for my_samplers.py)")


def validate_data(config) -> None:
    d = config.data
    one_of(config, "data.dataset", DATASETS)
    try:
        declared_levels(d)
    except ValueError:
        raise ConfigError("data.num_levels", d.num_levels, "0 (the data's own levels) or an int in 2..256") from None
    int_at_least(config, "data.split_seed", 0)
    number(config, "data.test_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
    for name in ("num_train", "num_test", "image_size", "num_channels", "dim"):
        int_at_least(config, f"data.{name}", 1)
    if not isinstance(d.get("autoencoder", ""), str):
        raise ConfigError("data.autoencoder", d.autoencoder, "'' or an autoencoder run directory")


def validate_autoencoder(config) -> None:
    """`autoencoder`: downsampling factor, latent channels, width, KL weight."""
    one_of(config, "autoencoder.f", AUTOENCODER_FACTORS)
    int_at_least(config, "autoencoder.latent_channels", 1)
    int_at_least(config, "autoencoder.nf", 8)
    number(config, "autoencoder.beta", 0.0)


def validate_sde(config) -> None:
    try:
        sde_lib.get_sde(config)
    except ValueError as e:
        raise InputError(f"config.sde: {e}") from None


def validate_model(config) -> None:
    """The name is registered, the parameterisation fields hold known values and mean something for
    the config's SDE (`models.Parameterization`), and the network builds (on the meta device: no
    memory, no compute)."""
    one_of(config, "model.name", models.model_names())
    int_at_least(config, "model.num_classes", 0)
    m = config.model
    one_of(config, "model.prediction", PREDICTIONS)
    one_of(config, "model.label", LABELS)
    if data_range_of(m.data_range) is None:
        raise ConfigError("model.data_range", m.data_range, f"one of {[list(r) for r in DATA_RANGES]}")
    sde = sde_lib.get_sde(config)
    if "auto" in (m.prediction, m.label) and (sde.prediction is None or sde.label is None):
        field = "model.prediction" if m.prediction == "auto" else "model.label"
        raise ConfigError(field, "auto", f"explicit: {type(sde).__name__} declares no default parameterisation")
    if m.label == "discrete_step":
        try:
            sde.discrete_log_snrs()
        except ValueError:
            raise ConfigError("model.label", m.label, f"a continuous-time label: {type(sde).__name__} has no "
                                                      f"discrete-time chain") from None
    for name, choices in UNET_CHOICES.items():          # U-Net options (None: the family's default)
        if config.model[name] is not None:
            one_of(config, f"model.{name}", choices)
    if config.model.fourier_product is not None:
        one_of(config, "model.fourier_product", FOURIER_PRODUCTS)
    if config.model.fourier_mult is not None:
        int_at_least(config, "model.fourier_mult", 1)
    for name in ("resample_skip_conv", "fir", "exact_groups", "center_input"):
        if config.model[name] is not None:
            boolean(config, f"model.{name}")
    validate_prompt_model(config)
    try:
        with torch.device("meta"):
            models.get_model(config)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(f"the model settings do not build a network: {type(e).__name__}: {first}") from None


def validate_training(config) -> None:
    t = "training"
    for name in ("n_iters", "warmup", "sample_freq", "eval_freq"):
        int_at_least(config, f"{t}.{name}", 0)
    v = config.training.num_threads
    if not _is_int(v) or v < -1:
        raise ConfigError(f"{t}.num_threads", v, "an int >= 1, 0 (torch's default) or -1 (auto: the CPUs idle at start)")
    for name in ("batch_size", "snapshot_freq", "log_freq", "keep", "sample_num", "eval_num_samples"):
        int_at_least(config, f"{t}.{name}", 1)
    number(config, f"{t}.lr", 0.0, lo_open=True)
    number(config, f"{t}.grad_clip", 0.0)
    number(config, f"{t}.beta1", 0.0, 1.0, hi_open=True)
    number(config, f"{t}.adam_eps", 0.0, lo_open=True)
    number(config, f"{t}.weight_decay", 0.0)
    number(config, f"{t}.ema_decay", 0.0, 1.0, hi_open=True)
    number(config, f"{t}.label_dropout", 0.0, 1.0)
    one_of(config, f"{t}.precision", PRECISIONS)
    for name in ("channels_last", "compile", "continuous", "reduce_mean", "likelihood_weighting", "ema_warmup",
                 "importance_sampling", "dequantize", "progress"):
        boolean(config, f"{t}.{name}")


def validate_sampling(config) -> None:
    s = config.sampling
    one_of(config, "sampling.sampler", (*solvers.SAMPLERS, solvers.COLD_SAMPLER))   # "cold": a cold run's sampler
    for name in ("steps", "num_samples", "batch_size", "samples_per_class"):
        int_at_least(config, f"sampling.{name}", 1)
    int_at_least(config, "sampling.seed", 0)
    for name in ("denoise", "use_ema"):
        boolean(config, f"sampling.{name}")
    spec = solvers.SAMPLERS.get(s.sampler)
    given = s.options.get(s.sampler, None)
    unknown = sorted(set(given or {}) - set(spec.options if spec else ()))
    if unknown:
        raise ConfigError(f"sampling.options.{s.sampler}", dict(given),
                          f"options among {sorted(spec.options if spec else ())}")
    _validate_guidance(config)


def parse_class_label(config):
    """`sampling.class_label` as None, an int, or "all"."""
    text = str(config.sampling.class_label).strip().lower()
    if text in ("none", ""):
        return None
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise ConfigError("sampling.class_label", text, "'none', an int or 'all'") from None


def _validate_guidance(config) -> None:
    s = config.sampling
    one_of(config, "sampling.guidance", GUIDANCE)
    g, label = s.guidance, parse_class_label(config)
    K = config.model.num_classes
    if validate_prompt_guidance(config, label):      # prompt nets, contrastive guidance (schema_prompts.py)
        number(config, "sampling.guidance_scale")
        return
    if g != "none" and label is None:
        raise ConfigError("sampling.class_label", s.class_label, f"an int or 'all' with sampling.guidance={g!r}")
    if g == "cfg" and K == 0:
        raise ConfigError("model.num_classes", K, "> 0 (a class-conditional model) for sampling.guidance='cfg'")
    if g == "none" and label is not None and K == 0:
        raise ConfigError("model.num_classes", K, "> 0 (a class-conditional model) for sampling.class_label "
                                                 "without guidance; or use sampling.guidance=classifier")
    n = K if K else config.classifier.num_classes if g in ("classifier", "universal") else 0
    if isinstance(label, int) and not 0 <= label < max(n, 1):
        raise ConfigError("sampling.class_label", label, f"a class in [0, {n})")
    number(config, "sampling.guidance_scale")


def validate_eval(config) -> None:
    for name in ("batch_size", "repeats", "probes"):
        int_at_least(config, f"eval.{name}", 1)
    int_at_least(config, "eval.elbo_n_t", 2)
    int_at_least(config, "eval.num_samples", 0)
    int_at_least(config, "eval.seed", 0)
    boolean(config, "eval.use_ema")
    one_of(config, "eval.estimator", ESTIMATORS)
    one_of(config, "eval.trace", TRACES)
    one_of(config, "eval.dtype", ("float32", "float64"))
    one_of(config, "eval.pixel_convention", PIXEL_CONVENTIONS)
    if config.eval.eps is not None:
        number(config, "eval.eps", 0.0, 1.0, lo_open=True, hi_open=True)


def validate_compare(config) -> None:
    c = config.compare
    resolve_samplers(c.samplers)
    for v in c.nfe:
        if not _is_int(v) or v < 2:
            raise ConfigError("compare.nfe", tuple(c.nfe), "ints >= 2 (score evaluations)")
    for v in c.tolerances:
        if not _is_num(v) or not v > 0:
            raise ConfigError("compare.tolerances", tuple(c.tolerances), "numbers > 0")
    int_at_least(config, "compare.num_samples", 10)
    seeds = tuple(c.seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(_is_int(s) and s >= 0 for s in seeds):
        raise ConfigError("compare.seeds", seeds, "distinct ints >= 0")
    if len(seeds) < 2:
        raise ConfigError("compare.seeds", seeds, "at least 2 seeds (it needs at least 2 seeds for a standard error)")
    if c.primary_metric:
        one_of(config, "compare.primary_metric", METRICS)
    int_at_least(config, "compare.seed", 0)
    int_at_least(config, "compare.feature_epochs", 1)
    for name in ("quick", "inception", "progress", "use_ema"):
        boolean(config, f"compare.{name}")
    if c.quick:                  # quick replaces these three: refuse a set value it would override
        default = get_default_config().compare
        for name in ("nfe", "tolerances", "num_samples"):
            norm = (lambda v: tuple(v)) if name != "num_samples" else (lambda v: v)
            if norm(c[name]) != norm(default[name]):
                raise ConfigError("compare.quick", True, f"False when compare.{name} is set (quick replaces "
                                  f"compare.nfe, tolerances and num_samples with (5, 10, 20), (0.01,) and 200; "
                                  f"drop quick to keep compare.{name}={c[name]})")


def validate_classifier(config) -> None:
    one_of(config, "classifier.name", models.CLASSIFIERS)
    for name in ("num_classes", "n_iters", "batch_size", "nf", "num_res_blocks", "hidden", "num_blocks"):
        int_at_least(config, f"classifier.{name}", 1)
    int_at_least(config, "classifier.seed", 0)
    number(config, "classifier.lr", 0.0, lo_open=True)
    number(config, "classifier.weight_decay", 0.0)
    number(config, "classifier.dropout", 0.0, 1.0, hi_open=True)
    boolean(config, "classifier.noise_conditional")
    if not isinstance(config.classifier.dir, str) or not config.classifier.dir:
        raise ConfigError("classifier.dir", config.classifier.dir, "a non-empty folder name")


def validate_inpaint(config) -> None:
    c = config.inpaint
    one_of(config, "inpaint.mask", solvers.MASKS)
    box = tuple(c.box)
    if len(box) != 4 or not all(_is_num(b) and 0.0 <= b <= 1.0 for b in box) or box[0] >= box[2] \
            or box[1] >= box[3]:
        raise ConfigError("inpaint.box", box, "(row0, col0, row1, col1) fractions with row0 < row1, col0 < col1")
    number(config, "inpaint.random_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
    for name in ("num_images", "steps", "recurrence", "corrector_steps"):
        int_at_least(config, f"inpaint.{name}", 1)
    int_at_least(config, "inpaint.seed", 0)
    boolean(config, "inpaint.use_ema")
    one_of(config, "inpaint.corrector", solvers.CORRECTORS)
    number(config, "inpaint.snr", 0.0, lo_open=True)
    one_of(config, "inpaint.sampler", solvers.SAMPLERS)
    reason = solvers.SAMPLERS[c.sampler].resampling_refusal() if c.recurrence > 1 else None
    if reason:
        raise ConfigError("inpaint.recurrence", c.recurrence, f"1 with inpaint.sampler={c.sampler!r} ({reason})")


def validate_cold(config) -> None:
    """The cold-diffusion section (runner/cold.py): the degradation (a name of
    `sde_lib.DEGRADATIONS`, or "" for a score model) with its options and schedule domain, the loss,
    sampler and prior fields, and what a cold run cannot combine with (vector data, class labels,
    the score-model monitors)."""
    c = config.cold
    one_of(config, "cold.degradation", ("", *sde_lib.DEGRADATIONS))
    one_of(config, "cold.loss", ("l1", "l2"))
    one_of(config, "cold.algorithm", COLD_ALGORITHMS)
    one_of(config, "cold.prior", ("auto", "gmm", "fixed"))
    for name in ("steps", "prior_components"):
        int_at_least(config, f"cold.{name}", 1)
    number(config, "cold.prior_noise", 0.0)
    name = c.degradation
    if not name:
        return
    if config.model.name == "mlp":
        raise ConfigError("model.name", config.model.name, f"an image network for cold.degradation={name!r}")
    try:
        sde_lib.get_degradation(config)          # the degradation's own options and schedule domain
    except ValueError as e:
        raise InputError(f"config.cold.options.{name}: {e}") from None
    if config.model.num_classes:
        raise ConfigError("model.num_classes", config.model.num_classes,
                          f"0 (cold restoration networks are unconditional) with cold.degradation={name!r}")
    if parse_class_label(config) is not None:
        raise ConfigError("sampling.class_label", config.sampling.class_label,
                          f"'none' (class-conditional sampling needs a score model) with cold.degradation={name!r}")
    for field in ("eval_freq", "sample_freq"):
        if config.training[field]:
            raise ConfigError(f"training.{field}", config.training[field],
                              f"0 with cold.degradation={name!r} (it monitors a score model: held-out DSM loss, "
                              f"sampler grids)")



def validate_pretrained(config) -> None:
    """config.pretrained (configs/pretrained/*.py only): the checkpoint format and the file's path
    (the file itself is read and checked by --mode import, runner/importer.py)."""
    if "pretrained" not in config:
        return
    one_of(config, "pretrained.format", CHECKPOINT_FORMATS)
    if not isinstance(config.pretrained.checkpoint, str):
        raise ConfigError("pretrained.checkpoint", config.pretrained.checkpoint, "a file path (a string)")


SECTIONS = (validate_run, validate_plugins, validate_data, validate_sde, validate_model, validate_training,
            validate_sampling, validate_eval, validate_compare, validate_classifier, validate_inpaint,
            validate_pretrained, validate_cold, validate_autoencoder, validate_prompts, validate_contrastive)


def validate_config(config) -> None:
    """Every section's validator, in the order of `configs/default.py`; raises ConfigError/InputError."""
    for check in SECTIONS:
        check(config)
