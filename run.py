"""Command line: train, sample and evaluate score SDE models from ml_collections configs.

    python run.py                                         # the demo: train + sample + eval on digits
    scoresde ...                                          # the same command, once installed (pip install -e .)
    python run.py --config configs/digits_vp_ddpmpp.py --workdir runs/vp --mode train
    python run.py --config configs/digits_vp_ddpmpp.py --workdir runs/vp --mode sample \\
        --config.sampling.sampler=ode --config.sampling.num_samples=16
    python run.py --config configs/digits_vp_ddpmpp.py --workdir runs/vp --mode eval

Modes:
  train   train (or resume from the workdir's latest checkpoint); saves the config as
          workdir/config.py at the first train; writes checkpoints/, metrics.jsonl, loss.png
          (and train_samples/ with training.sample_freq)
  sample  draws config.sampling.num_samples samples with config.sampling.sampler (options from
          config.sampling.options.<sampler>) into a new samples/step<step>-<sampler>-<NNN>/:
          samples.npz, samples.png, sample.json; the last stdout line is the .npz path
  eval    test-split bits/dim (ODE NLL and/or ELBO, baselines; config.eval) into eval/step<N>-.../eval.json
  compare a sampler study: every sampler (config.compare.samplers="all") x an NFE ladder x seeds on the
          trained model, image metrics in the feature space of a classifier trained on the data, with
          reference rows (train-vs-test floor, fitted Gaussian, exact score for mixture data); resumable;
          writes compare/step<N>-<study>/ compare.json, .md, .png, grids (compare.quick=True: minutes)
  train_contrastive  the noise-conditional image-text model of CLIP-style guidance (config.contrastive) into
          workdir/<contrastive.dir>/; sample takes sampling.prompt and sampling.guidance=contrastive
  train_classifier  the classifier of config.classifier (noise-conditional for guidance, or a clean-data
          judge) into workdir/<classifier.dir>/; sample takes sampling.class_label / guidance / guidance_scale
  inpaint, colorize  on test images with config.inpaint (mask spec, sampler) into <mode>/step<N>-.../
  import  a published checkpoint into a new run directory: --config configs/pretrained/<name>.py
          --config.pretrained.checkpoint=FILE (a score_sde .pth or a diffusers .safetensors/.bin);
          then sample, eval, compare, inpaint run on it (runner/importer.py)
  train_autoencoder  a KL autoencoder of config.autoencoder on config.data (models/autoencoder.py); a run with
          --config.data.autoencoder=<its workdir> trains, samples and evals on its latents (docs/guide/latent.md)
  all     train, then sample, then eval (what `python run.py` with no arguments does)

Once a workdir has been trained, --config is optional: every mode loads workdir/config.py, and
overrides of model, sde or data fields are refused. --checkpoint STEP picks the checkpoint of
sample, eval, compare, inpaint and colorize (default: the latest); with --mode train it resumes from
that step when every later checkpoint is unreadable (they are kept as *.corrupt).
--config.plugins="('my_module',)" imports your modules first, so the samplers and models they
register work from the command line. Any config field can be overridden:
--config.training.n_iters=2000 (or "--config.training.n_iters 2000"). Bad flags or values end
with one line `error: ...` on stderr and exit status 2 (before any directory is created; see
configs/errors.py: only the project's InputError/ConfigError, any other exception is a bug and keeps its
traceback); a diverged training or sampling run exits with status 1. Multi-process: torchrun
--nproc_per_node=N run.py ... (see training/distributed.py).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import torch

from configs.errors import InputError
from configs.schema import validate_config
from runner.cold import check_cold_mode
from runner.common import RunFailed, next_command
from runner.compare import run_compare
from runner.config_io import apply_override, load_config, load_plugins  # noqa: F401 (public: bench/ uses run.load_config)
from runner.evaluate import run_eval
from runner.importer import check_import_args, run_import
from runner.inpaint import run_inpaint
from runner.latent import check_latent_mode, run_train_autoencoder
from runner.prompted import check_prompt, run_train_contrastive
from runner.rundir import has_checkpoint, resolve_config
from runner.sample import run_sample
from runner.train import run_train
from runner.train_classifier import run_train_classifier
from training import NonFiniteLossError, distributed
from training.checkpoint import find_checkpoint
from training.workdir import check_workdir
from training.workdir import clean_stale_temp

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")
DEFAULT_WORKDIR = os.path.join("runs", "demo")
MODES = ("train", "sample", "eval", "compare", "train_classifier", "train_contrastive", "inpaint", "colorize", "import",
         "train_autoencoder", "all")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Train, sample and evaluate score SDE models.",
        epilog="Override any config field with --config.<field>=<value>, e.g. --config.training.n_iters=2000.")
    parser.add_argument("--config", default=None,
                        help="config file with get_config() (default: the workdir's saved config, else the demo)")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help=f"output directory (default: {DEFAULT_WORKDIR})")
    parser.add_argument("--mode", default="all", metavar="{" + ",".join(MODES) + "}",
                        help="what to run (default: all = train, sample, eval)")
    parser.add_argument("--checkpoint", default=None,
                        help="step of the checkpoint that sample, eval and compare use (default: the latest)")
    args, rest = parser.parse_known_args(argv)
    overrides, i = [], 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--config."):
            raise InputError(f"unrecognised argument {arg!r}; expected --config FILE, --workdir DIR, "
                             f"--mode {{{','.join(MODES)}}}, --checkpoint STEP or --config.<field>=<value>")
        if "=" in arg:
            key, val = arg[2:].split("=", 1)
        else:
            if i + 1 >= len(rest):
                raise InputError(f"{arg} needs a value (--config.<field>=<value>)")
            key, val = arg[2:], rest[i + 1]
            i += 1
        overrides.append((key[len("config."):], val))
        i += 1
    if args.mode not in MODES:
        raise InputError(f"unknown mode {args.mode!r}; expected one of {list(MODES)}")
    if args.checkpoint is not None:
        text = str(args.checkpoint).strip()
        if not text.isdigit():
            raise InputError(f"--checkpoint must be a step (an int >= 0), got {args.checkpoint!r}")
        args.checkpoint = int(text)
        if args.mode not in ("train", "sample", "eval", "compare", "inpaint", "colorize"):
            raise InputError(f"--checkpoint picks the checkpoint of sample, eval, compare, inpaint and colorize, "
                             f"or the one train resumes from; --mode {args.mode} takes none")
    return args, overrides


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    workdir, existed = None, True
    try:
        args, overrides = parse_args(argv)
        check_workdir(args.workdir)
        if args.mode == "import":
            check_import_args(args)
        config, _ = resolve_config(args.config, overrides, args.workdir, DEFAULT_CONFIG)
        load_plugins(config)
        validate_config(config)
        unsharded = ("train_classifier", "train_contrastive", "inpaint", "colorize", "import")
        if distributed.env_world().world_size > 1 and args.mode in unsharded:
            raise InputError(f"--mode {args.mode} does not shard its work over processes yet; under torchrun "
                             f"use --mode train, sample, eval, compare or all, and run {args.mode} with one process")
        check_cold_mode(config, args.mode)           # cold runs: sampler and modes
        check_latent_mode(config, args.mode, args.workdir)   # latent runs: the autoencoder run, scale, modes
        check_prompt(config, args.workdir, args.mode)   # prompts: unknown words, before any work
        if args.mode in ("sample", "eval", "compare"):
            find_checkpoint(os.path.join(args.workdir, "checkpoints"), args.checkpoint)
        if config.training.num_threads != 0:
            threads, note = distributed.thread_share(config.training.num_threads)
            if note and distributed.env_world().rank == 0:
                print(note)
            torch.set_num_threads(threads)
        workdir, existed = args.workdir, os.path.isdir(args.workdir)
        if os.path.isdir(workdir):
            clean_stale_temp(workdir)            # leftovers of killed processes (their pid is dead)
        t0 = time.time()
        if args.mode in ("train", "all"):
            run_train(config, workdir, **({} if args.checkpoint is None else {"resume_from": args.checkpoint}))
        if args.mode in ("sample", "all"):
            run_sample(config, workdir, args.checkpoint, next_hint=args.mode == "sample")
        if args.mode in ("eval", "all"):
            run_eval(config, workdir, args.checkpoint)
        if args.mode == "compare":
            run_compare(config, workdir, args.checkpoint)
        if args.mode == "train_classifier":
            run_train_classifier(config, workdir)
        if args.mode == "train_contrastive":
            run_train_contrastive(config, workdir)
        if args.mode in ("inpaint", "colorize"):
            run_inpaint(config, workdir, task=args.mode, checkpoint=args.checkpoint)
        if args.mode == "import":
            run_import(config, workdir)
        if args.mode == "train_autoencoder":
            run_train_autoencoder(config, workdir)
        if args.mode == "all" and os.environ.get("RANK", "0") == "0":
            print(f"done in {time.time() - t0:.0f}s; outputs in {os.path.abspath(workdir)}: config.py, checkpoints/, "
                  f"metrics.jsonl, loss.png, samples/, eval/")
        if args.mode != "sample" and os.environ.get("RANK", "0") == "0":
            print(next_command(args.mode, workdir))
        return 0
    except InputError as e:          # bad flags, config values, files: one line, exit 2
        _discard_new_workdir(workdir, existed)
        _error(e)
        return 2
    except (NonFiniteLossError, RunFailed) as e:     # a run that diverged: one line, exit 1
        _discard_new_workdir(workdir, existed)
        _error(e)
        return 1
    except OSError as e:     # disk full, permissions changed mid-run, ...: one line, not a traceback
        _discard_new_workdir(workdir, existed)
        _error(f"{type(e).__name__}: {e}")
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()


def _error(e) -> None:
    """One `error:` line on stderr (under torchrun from rank 0 only: every rank fails alike)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"error: {e}", file=sys.stderr)


def _discard_new_workdir(workdir, existed):
    """A command that failed in a workdir it created leaves nothing behind unless it wrote a checkpoint."""
    if workdir is None or existed or not os.path.isdir(workdir):
        return
    if not has_checkpoint(workdir):
        shutil.rmtree(workdir, ignore_errors=True)


def cli() -> None:
    """The `scoresde` console command (setup.cfg entry point): the same as `python run.py`."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
