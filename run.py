"""Command line: train, sample and evaluate score SDE models from ml_collections configs.

    python run.py                                         # the demo: train + sample + eval on digits
    python run.py --config configs/digits_vp_ddpmpp.py --workdir runs/vp --mode train
    python run.py --config configs/digits_vp_ddpmpp.py --workdir runs/vp --mode sample \\
        --config.sampling.sampler=ode --config.sampling.num_samples=16
    python run.py --config configs/digits_vp_ddpmpp.py --workdir runs/vp --mode eval

Modes:
  train   train (or resume from the workdir's latest checkpoint); writes checkpoints/ and metrics.jsonl
  sample  draws config.sampling.num_samples samples with config.sampling.sampler (options from
          config.sampling.options.<sampler>); writes samples.npz, samples.png, sample.json
  eval    bits/dim of the test split under the probability-flow ODE (config.eval); writes eval.json
  compare every sampler of config.compare.samplers at every budget (steps, or tolerances for the
          adaptive ODE) on the trained model: nfe, seconds and sliced W1 to the test split, plus the
          data's own floor; for `mixture` data also with the exact score; writes compare.json, compare.png
  all     train, then sample, then eval (what `python run.py` with no arguments does)

Any config field can be overridden: --config.training.n_iters=2000 (or "--config.training.n_iters 2000").
Bad flags or values end with one line `error: ...` on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import os
import sys
import time

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")
DEFAULT_WORKDIR = os.path.join("runs", "demo")
MODES = ("train", "sample", "eval", "compare", "all")


# ---- config loading and overrides ------------------------------------------------------------

def load_config(path: str):
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location("_scoresde_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ValueError(f"cannot load config {path!r}: {type(e).__name__}: {e}") from None
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path!r} defines no get_config()")
    return module.get_config()


def _parse_value(text: str):
    """Python literal if it parses as one (numbers, tuples, True/None), else the raw string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(config, dotted: str, text: str) -> None:
    """Set config.<dotted> from its command-line text, keeping the field's type."""
    import ml_collections
    keys = dotted.split(".")
    # sampling.options.<sampler>.<option> blocks are free-form keyword arguments of
    # solvers.sample: new samplers and options may be added from the command line.
    free_form = keys[:2] == ["sampling", "options"] and len(keys) == 4
    node = config
    for i, k in enumerate(keys[:-1]):
        if free_form and isinstance(node, ml_collections.ConfigDict) and k not in node and i == 2:
            node[k] = ml_collections.ConfigDict()
        if not isinstance(node, ml_collections.ConfigDict) or k not in node:
            raise ValueError(f"unknown config field 'config.{'.'.join(keys[:i + 1])}'")
        node = node[k]
    last = keys[-1]
    if free_form and isinstance(node, ml_collections.ConfigDict) and last not in node:
        node[last] = _parse_value(text)
        return
    if not isinstance(node, ml_collections.ConfigDict) or last not in node:
        where = ".".join(keys[:-1])
        valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        raise ValueError(f"unknown config field 'config.{dotted}'" + (f"; fields of config.{where}: {valid}"
                                                                         if where else ""))
    value = _parse_value(text)
    current = node[last]
    if isinstance(current, str) and not isinstance(value, str):
        value = text          # e.g. --config.data.path=123 stays a string
    if isinstance(current, tuple) and isinstance(value, (int, float)):
        value = (value,)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        node[last] = value
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad value {text!r} for config.{dotted} (currently {current!r}): {e}") from None


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run.py", description="Train, sample and evaluate score SDE models.",
        epilog="Override any config field with --config.<field>=<value>, e.g. --config.training.n_iters=2000.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="config file with get_config() (default: the demo)")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help=f"output directory (default: {DEFAULT_WORKDIR})")
    parser.add_argument("--mode", default="all", help=f"one of {list(MODES)} (default: all)")
    args, rest = parser.parse_known_args(argv)
    overrides, i = [], 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--config."):
            raise ValueError(f"unrecognised argument {arg!r}; expected --config FILE, --workdir DIR, "
                             f"--mode {{{','.join(MODES)}}} or --config.<field>=<value>")
        if "=" in arg:
            key, val = arg[2:].split("=", 1)
        else:
            if i + 1 >= len(rest):
                raise ValueError(f"{arg} needs a value (--config.<field>=<value>)")
            key, val = arg[2:], rest[i + 1]
            i += 1
        overrides.append((key[len("config."):], val))
        i += 1
    if args.mode not in MODES:
        raise ValueError(f"unknown mode {args.mode!r}; expected one of {list(MODES)}")
    return args, overrides


def validate_config(config) -> None:
    """Fail early, with one message, on names and values that would fail later."""
    import models
    import sde_lib
    import solvers
    from training.data import DATASETS
    sde_lib.get_sde(config)
    if config.model.name not in models.model_names():
        raise ValueError(f"unknown model name {config.model.name!r}; expected one of {models.model_names()}")
    if config.data.dataset not in DATASETS:
        raise ValueError(f"unknown data set {config.data.dataset!r}; expected one of {list(DATASETS)}")
    if config.sampling.sampler not in solvers.SAMPLERS:
        raise ValueError(f"unknown sampler {config.sampling.sampler!r}; expected one of {list(solvers.SAMPLERS)}")
    if config.eval.trace not in ("exact", "hutchinson"):
        raise ValueError(f"unknown eval.trace {config.eval.trace!r}; expected one of ['exact', 'hutchinson']")
    for name in ("training.n_iters", "sampling.num_samples", "eval.num_samples"):
        section, field = name.split(".")
        v = config[section][field]
        if not isinstance(v, int) or v < 0 or (name == "sampling.num_samples" and v == 0):
            raise ValueError(f"config.{name} must be a {'positive' if name.startswith('sampling') else 'non-negative'}"
                             f" int, got {v!r}")
    cmp = config.compare
    for name in cmp.samplers:
        if name not in solvers.SAMPLERS:
            raise ValueError(f"unknown sampler {name!r} in config.compare.samplers; "
                             f"expected names from {list(solvers.SAMPLERS)}")
    for v in cmp.steps:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"config.compare.steps must hold positive ints, got {v!r}")
    for v in cmp.tolerances:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            raise ValueError(f"config.compare.tolerances must hold numbers > 0, got {v!r}")
    if not isinstance(cmp.num_samples, int) or cmp.num_samples < 2:
        raise ValueError(f"config.compare.num_samples must be an int >= 2, got {cmp.num_samples!r}")
    if config.training.num_threads < 0:
        raise ValueError(f"config.training.num_threads must be >= 0 (0: torch default), "
                         f"got {config.training.num_threads!r}")


# ---- outputs ------------------------------------------------------------------------------------

def data_shape(model):
    if hasattr(model, "image_size"):
        return (model.num_channels, model.image_size, model.image_size)
    return (model.dim,)


def save_image_grid(images_uint8, path: str, scale: int = 0) -> None:
    """uint8 `[N, C, H, W]` -> one PNG grid (ceil(sqrt N) columns, 1-pixel gaps), upscaled to >= 256 px."""
    import numpy as np
    from PIL import Image
    x = images_uint8.numpy() if hasattr(images_uint8, "numpy") else images_uint8
    n, c, h, w = x.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i].transpose(1, 2, 0)
    img = Image.fromarray(grid[:, :, 0] if c == 1 else grid)
    scale = scale or max(1, 256 // max(grid.shape[:2]) + 1)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def save_scatter(samples, data, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    for ax, pts, title in ((axes[0], data, "data (test split)"), (axes[1], samples, "samples")):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _json_safe(v):
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return repr(v)


# ---- modes --------------------------------------------------------------------------------------

def run_train(config, workdir):
    from training import train
    state = train(config, workdir)
    print(f"trained to step {state.step}; checkpoint: {state.checkpoint}; "
          f"metrics: {os.path.join(workdir, 'metrics.jsonl')}")
    return state


def restored_score_fn(config, workdir, use_ema):
    """(sde, model, score_fn, step, checkpoint) of the latest checkpoint in `workdir`."""
    import models
    import sde_lib
    from training import restore_model
    sde = sde_lib.get_sde(config)
    model, step, ckpt = restore_model(config, workdir, use_ema=use_ema)
    return sde, model, models.get_score_fn(sde, model), step, ckpt


def run_sample(config, workdir):
    import numpy as np
    import torch
    import solvers
    from training.data import get_dataset, model_to_uint8

    s = config.sampling
    sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, s.use_ema)
    options = dict(s.options.get(s.sampler, {}) or {})
    if s.sampler != "ode" and "steps" not in options:
        options["steps"] = s.steps
    gen = torch.Generator().manual_seed(s.seed)
    shape = (s.num_samples, *data_shape(model))
    x, info = solvers.sample(sde, score_fn, shape, sampler=s.sampler, generator=gen, denoise=s.denoise,
                             progress=bool(config.training.get("progress", True)), **options)
    out = {"samples": x.numpy()}
    is_image = len(shape) == 4
    if is_image:
        u8 = model_to_uint8(x)
        out["images_uint8"] = u8.numpy()
        figure = os.path.join(workdir, "samples.png")
        save_image_grid(u8, figure)
    else:
        figure = os.path.join(workdir, "samples.png")
        if shape[1] >= 2:
            data = get_dataset(config).test
            save_scatter(x.numpy(), data.numpy(), figure)
        else:
            figure = None
    np.savez(os.path.join(workdir, "samples.npz"), **out)
    report = {"sampler": s.sampler, "options": _json_safe(info.options), "nfe": info.nfe,
              "seconds": round(info.seconds, 3), "num_samples": s.num_samples, "use_ema": s.use_ema,
              "checkpoint": ckpt, "step": step, "finite": bool(torch.isfinite(x).all())}
    with open(os.path.join(workdir, "sample.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"sampled {s.num_samples} with {s.sampler} ({info.nfe} score evaluations, {info.seconds:.1f}s): "
          f"{os.path.join(workdir, 'samples.npz')}" + (f", {figure}" if figure else "")
          + f", {os.path.join(workdir, 'sample.json')}")
    return report


def run_eval(config, workdir):
    import torch
    import solvers
    from training.data import dequantize, get_dataset

    e = config.eval
    sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, e.use_ema)
    ds = get_dataset(config)
    x = ds.test if e.num_samples == 0 else ds.test[:e.num_samples]
    gen = torch.Generator().manual_seed(e.seed)
    if ds.eight_bit:
        x = dequantize(x, gen)
    t0 = time.time()
    bpd, nfe = [], 0
    for i in range(0, x.shape[0], e.batch_size):
        xb = x[i:i + e.batch_size]
        res = solvers.log_likelihood(sde, score_fn, xb, trace=e.trace, method=e.method, rtol=e.rtol, atol=e.atol,
                                     generator=gen)
        nfe += res.nfe
        if ds.eight_bit:
            bpd.append(solvers.bits_per_dim(res.logp, xb.shape))
        else:   # continuous data: negative log-likelihood in bits per dimension, no quantisation term
            bpd.append(-res.logp / (xb[0].numel() * math.log(2)))
    bpd = torch.cat(bpd).double()
    n = bpd.numel()
    stderr = (bpd.std() / math.sqrt(n)).item() if n > 1 else float("nan")
    report = {"bits_per_dim": bpd.mean().item(), "stderr": stderr, "num_examples": n,
              "quantity": "bits/dim of 8-bit data (uniform dequantisation)" if ds.eight_bit
              else "negative log-likelihood in bits/dim (continuous data)",
              "trace": e.trace, "method": e.method, "rtol": e.rtol, "atol": e.atol, "nfe": nfe,
              "seconds": round(time.time() - t0, 3), "use_ema": e.use_ema, "checkpoint": ckpt, "step": step,
              "dataset": ds.name, "split": "test"}
    with open(os.path.join(workdir, "eval.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"test bits/dim {report['bits_per_dim']:.4f} +- {stderr:.4f} (n={n}, {e.trace} trace, "
          f"{nfe} score evaluations, {report['seconds']:.1f}s): {os.path.join(workdir, 'eval.json')}")
    return report


def compare_budgets(config, name):
    """The (label, options) runs of sampler `name` in compare mode: one per grid size, or one
    per tolerance for the adaptive ODE. Options start from config.sampling.options.<name>."""
    import solvers
    base = dict(config.sampling.options.get(name, {}) or {})
    c = config.compare
    if name == "ode" and base.get("method", "dopri5") not in solvers.FIXED_ODE_METHODS:
        return [({"tol": tol}, {**base, "rtol": tol, "atol": tol}) for tol in c.tolerances]
    return [({"steps": n}, {**base, "steps": n}) for n in c.steps]


def run_compare(config, workdir):
    """Sampler comparison on the trained model (and, for mixture data, on the exact score)."""
    import torch
    import solvers
    from training.data import get_dataset, mixture_distribution

    c = config.compare
    sde, model, model_score_fn, step, ckpt = restored_score_fn(config, workdir, c.use_ema)
    ds = get_dataset(config)
    n = min(c.num_samples, ds.test.shape[0], ds.train.shape[0])
    ref = ds.test[:n].double()
    proj = lambda: torch.Generator().manual_seed(c.seed + 1)   # the same directions for every row
    floor = solvers.sliced_wasserstein(ds.train[:n], ref, generator=proj())
    score_fns = [("model", model_score_fn)]
    if ds.name == "mixture":
        m = config.data.mixture
        score_fns.append(("exact", mixture_distribution(m.weights, m.means, m.stds).score_fn(sde)))
    shape = (n, *data_shape(model))
    rows = []
    for score_name, score_fn in score_fns:
        for name in c.samplers:
            for budget, options in compare_budgets(config, name):
                gen = torch.Generator().manual_seed(c.seed)
                x, info = solvers.sample(sde, score_fn, shape, sampler=name, generator=gen,
                                         denoise=config.sampling.denoise, **options)
                finite = bool(torch.isfinite(x).all())
                sw = solvers.sliced_wasserstein(x, ref, generator=proj()) if finite else float("nan")
                rows.append({"score": score_name, "sampler": name, **budget, "nfe": info.nfe,
                             "seconds": round(info.seconds, 4), "sliced_w1": sw, "finite": finite})
                print(f"{score_name:5s} {name:16s} {budget} nfe={info.nfe:5d} sliced W1={sw:.4f} "
                      f"({info.seconds:.2f}s)")
    report = {"dataset": ds.name, "reference": f"test split, first {n}", "num_samples": n,
              "metric": "sliced Wasserstein-1 (256 directions) to the reference",
              "floor": floor, "floor_meaning": f"sliced W1 between {n} training and {n} test examples",
              "denoise": config.sampling.denoise, "checkpoint": ckpt, "step": step, "use_ema": c.use_ema,
              "results": rows}
    with open(os.path.join(workdir, "compare.json"), "w") as f:
        json.dump(_json_safe(report), f, indent=2)
    figure = os.path.join(workdir, "compare.png")
    save_compare_plot(report, figure)
    print(f"compared {len(rows)} runs (data floor {floor:.4f}): {os.path.join(workdir, 'compare.json')}, {figure}")
    return report


def save_compare_plot(report, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = {}
    for r in report["results"]:
        groups.setdefault((r["score"], r["sampler"]), []).append(r)
    colours = {}
    for (score, name), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["nfe"])
        colour = colours.setdefault(name, f"C{len(colours) % 10}")
        ax.plot([r["nfe"] for r in rs], [r["sliced_w1"] for r in rs], marker="o", color=colour,
                linestyle="-" if score == "model" else "--", label=f"{name} ({score} score)")
    ax.axhline(report["floor"], color="k", linewidth=0.8, linestyle=":", label="data floor")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("score evaluations (NFE)")
    ax.set_ylabel("sliced W1 to test split")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, overrides = parse_args(argv)
        config = load_config(args.config)
        for key, val in overrides:
            apply_override(config, key, val)
        validate_config(config)
        from training.loop import check_workdir
        check_workdir(args.workdir)
        import torch
        if config.training.num_threads > 0:
            torch.set_num_threads(config.training.num_threads)
        os.makedirs(args.workdir, exist_ok=True)
        t0 = time.time()
        if args.mode in ("train", "all"):
            run_train(config, args.workdir)
        if args.mode in ("sample", "all"):
            run_sample(config, args.workdir)
        if args.mode in ("eval", "all"):
            run_eval(config, args.workdir)
        if args.mode == "compare":
            run_compare(config, args.workdir)
        if args.mode == "all":
            print(f"done in {time.time() - t0:.0f}s; outputs in {os.path.abspath(args.workdir)}: checkpoints/, "
                  f"metrics.jsonl, samples.npz, samples.png, sample.json, eval.json")
        return 0
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from training import NonFiniteLossError
        if isinstance(e, NonFiniteLossError):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
