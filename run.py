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
  compare a sampler study: every sampler (config.compare.samplers="all") x an NFE ladder x seeds on the
          trained model, image metrics in the feature space of a classifier trained on the data, with
          reference rows (train-vs-test floor, fitted Gaussian, exact score for mixture data); resumable;
          writes compare.json, compare.md, compare.png, compare_grids/ (config.compare.quick=True: minutes)
  all     train, then sample, then eval (what `python run.py` with no arguments does)

Any config field can be overridden: --config.training.n_iters=2000 (or "--config.training.n_iters 2000").
Bad flags or values end with one line `error: ...` on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from runner.compare import run_compare
from runner.config_io import apply_override, load_config, validate_config
from runner.evaluate import run_eval
from runner.sample import run_sample
from runner.train import run_train

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")
DEFAULT_WORKDIR = os.path.join("runs", "demo")
MODES = ("train", "sample", "eval", "compare", "all")


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
