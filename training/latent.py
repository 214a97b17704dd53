"""Latent data: a trained autoencoder run, its latents of a data set, and the one path back to pixels.

An autoencoder run directory (`--mode train_autoencoder`) holds `autoencoder.json` (the data it was
trained on, its architecture, the data's levels) and the usual `checkpoints/`. From it:

- `load_autoencoder(run_dir)`: the EMA autoencoder of the latest checkpoint and that file's content
  hash (sha256 of its bytes);
- `encode_dataset(...)`: the posterior means mu(x) of the train and test splits (a deterministic
  choice: the latent data set is a function of x, and the bound's q(z|x) is evaluated separately),
  cached in `<run_dir>/latents/<hash>.pt` so they are computed once per checkpoint;
- `LatentCodec`: u = s * mu(x) with s = 1 / std(mu(train)) *estimated* from those latents (all
  elements pooled), and decode(u) = D(u / s). The codec is the only object that multiplies or divides
  by s, so a latent score model, its samplers and its likelihood see u, and nothing can divide twice.
  `codec.log_scale_jacobian` = d_z log s is what turns log p_u(u) into log p_z(z).
- `latent_dataset(config, ...)`: the scaled latents as a `Dataset` (continuous, the pixel set's
  labels), with `.codec` and `.pixels` (the pixel `Dataset`) attached.
- `AutoencoderObjective`: what the training loop needs to train an autoencoder instead of a score net.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from typing import Optional

import torch

import solvers
from configs.errors import InputError
from models.autoencoder import Autoencoder, build_autoencoder

from .checkpoint import WEIGHT_KEYS, check_state_dict, find_checkpoint, load_checkpoint
from .data import Dataset, get_dataset, levels_to_model, model_to_levels
from .workdir import temp_name

Tensor = torch.Tensor
AE_FILE = "autoencoder.json"
#: fields of config.data that must agree between an autoencoder run and a latent run built on it
DATA_FIELDS = ("dataset", "path", "key", "split_seed", "test_fraction", "num_levels")


class AutoencoderObjective:
    """Trains `config.autoencoder` in `training.train`: `build(config)` the network,
    `loss(model, x, gen)` the mean of rec + beta KL (per dimension of x; model may be DDP-wrapped),
    `heldout(model, x, gen)` the per-example values `[B]`. No dequantisation: the decoder is discrete."""

    def __init__(self, config, num_levels: int):
        self.num_levels, self.beta = int(num_levels), float(config.autoencoder.beta)
        self.latent_shape = build_autoencoder(config, num_levels).latent_shape

    def build(self, config) -> Autoencoder:
        return build_autoencoder(config, self.num_levels)

    def per_example(self, model, x: Tensor, generator) -> Tensor:
        eps = torch.randn((x.shape[0], *self.latent_shape), generator=generator, device=x.device, dtype=x.dtype)
        rec, kl = model(x, eps).unbind(1)
        return rec + self.beta * kl

    def loss(self, model, x: Tensor, generator) -> Tensor:
        return self.per_example(model, x, generator).mean()

    heldout = per_example


def write_autoencoder_info(config, workdir: str, num_levels: int) -> str:
    """`workdir/autoencoder.json`: what a latent run needs to rebuild and check this autoencoder."""
    ae = build_autoencoder(config, num_levels)
    info = {"data": {k: config.data[k] for k in DATA_FIELDS},
            "image_shape": [config.data.num_channels, config.data.image_size, config.data.image_size],
            "num_levels": int(num_levels), "f": ae.f, "latent_channels": ae.latent_channels,
            "nf": int(config.autoencoder.nf), "beta": float(config.autoencoder.beta),
            "latent_shape": list(ae.latent_shape)}
    return write_json_atomic(workdir, AE_FILE, info)


def write_json_atomic(directory: str, name: str, obj) -> str:
    """`directory/name` as JSON, written to a temporary file and renamed into place; its path."""
    path = os.path.join(directory, name)
    tmp = temp_name(directory, name)
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
    return path


def read_autoencoder_info(run_dir: str) -> dict:
    """`run_dir/autoencoder.json`, or InputError saying what `run_dir` is not."""
    if not run_dir or not os.path.isdir(run_dir):
        raise InputError(f"data.autoencoder={run_dir!r} is not a directory; expected an autoencoder run directory "
                         f"written by run.py --mode train_autoencoder")
    path = os.path.join(run_dir, AE_FILE)
    if not os.path.isfile(path):
        raise InputError(f"data.autoencoder={run_dir!r} holds no {AE_FILE}; it is not an autoencoder run directory "
                         f"(train one with --mode train_autoencoder)")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path!r} is unreadable ({type(e).__name__})") from None


def file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load_autoencoder(run_dir: str, device=None):
    """(EMA autoencoder in eval mode, info, checkpoint path, checkpoint hash) of `run_dir`'s latest checkpoint."""
    info = read_autoencoder_info(run_dir)
    ckpt = find_checkpoint(os.path.join(run_dir, "checkpoints"), None)
    state = load_checkpoint(ckpt, WEIGHT_KEYS)
    weights = state["ema"]["model"]
    check_state_dict(ckpt, "ema.model", weights)
    C, H, _ = info["image_shape"]
    ae = Autoencoder(H, C, info["num_levels"], f=info["f"], latent_channels=info["latent_channels"], nf=info["nf"])
    try:
        ae.load_state_dict(weights)
    except RuntimeError as e:
        raise InputError(f"checkpoint {ckpt!r} does not fit the autoencoder of {AE_FILE}: "
                         f"{str(e).splitlines()[0]}") from None
    ae.requires_grad_(False)
    return (ae.to(device) if device is not None else ae).eval(), info, ckpt, file_hash(ckpt)


def check_scale(scale, where: str) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise InputError(f"latent scale factor {scale!r} ({where}) must be a finite number > 0; the autoencoder's "
                         f"latents have zero or non-finite spread (retrain it, e.g. with a smaller "
                         f"autoencoder.beta)")
    return float(scale)


class LatentCodec:
    """u = s mu(x) and x = D(u / s): the only place the scale factor s is applied (module docstring)."""

    def __init__(self, autoencoder: Autoencoder, scale: float, where: str = "given"):
        self.autoencoder, self.scale = autoencoder, check_scale(scale, where)
        self.num_levels = autoencoder.num_levels

    @property
    def latent_shape(self):
        return self.autoencoder.latent_shape

    @property
    def log_scale_jacobian(self) -> float:
        """log |det d u / d z| = d_z log s: log p_z(z) = log p_u(s z) + this."""
        return math.prod(self.latent_shape) * math.log(self.scale)

    def posterior(self, x: Tensor):
        """(mean, log-variance) of q(z | x) for *unscaled* z, each `[B, c, h, w]`."""
        return self.autoencoder.encode(x)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """x `[B, C, H, W]` -> u = s mu(x) `[B, c, h, w]`."""
        return self.scale * self.autoencoder.encode(x)[0]

    def decode_mean(self, u: Tensor) -> Tensor:
        """u `[B, c, h, w]` (scaled latents) -> decoder means D(u / s) `[B, C, H, W]` in model space."""
        return self.autoencoder.decode(u / self.scale)

    @torch.no_grad()
    def decode(self, u: Tensor) -> Tensor:
        """u -> images quantised to the data's levels (bin centres), `[B, C, H, W]`."""
        L = self.num_levels
        return levels_to_model(model_to_levels(self.decode_mean(u), L), L).to(u.dtype)

    def log_px(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) `[B]` (nats) for unscaled z: the decoder's likelihood."""
        return self.autoencoder.log_px(x, z)

    def log_pz(self, sde, score_fn, z: Tensor, **ode_options):
        """(log p(z) `[B]`, nfe) of the latent score model `score_fn` (on u = s z) for unscaled z: the
        probability-flow ODE's log p_u(s z) (`solvers.log_likelihood`) plus d_z log s."""
        out = solvers.log_likelihood(sde, score_fn, self.scale * z, **ode_options)
        return out.logp + self.log_scale_jacobian, out.nfe


@torch.no_grad()
def encode_dataset(ae: Autoencoder, pixels: Dataset, run_dir: str, digest: str, batch_size: int = 500) -> dict:
    """{"train", "test": posterior means [N, c, h, w], "scale": 1/std(train means)}, cached in
    `run_dir/latents/<digest>.pt` (digest: the checkpoint's content hash)."""
    cache = os.path.join(run_dir, "latents", f"{digest}.pt")
    if os.path.isfile(cache):
        return torch.load(cache, weights_only=True)

    device = next(ae.parameters()).device

    def enc(x):
        return torch.cat([ae.encode(x[i:i + batch_size].to(device))[0].cpu() for i in range(0, x.shape[0], batch_size)])

    train, test = enc(pixels.train), enc(pixels.test)
    std = train.double().std().item()
    blob = {"train": train, "test": test, "std": std, "scale": (1.0 / std) if std > 0 else math.inf,
            "hash": digest, "encoding": "posterior mean"}
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    tmp = temp_name(os.path.dirname(cache), os.path.basename(cache))
    torch.save(blob, tmp)
    os.replace(tmp, cache)
    return blob


def pixel_config(config, info: dict):
    """A copy of `config` whose data section describes the autoencoder's pixels (its shape and data);
    InputError when the data of `config` is not the data the autoencoder was trained on."""
    d = config.data
    mine = {k: d[k] for k in DATA_FIELDS}
    theirs = {k: info["data"].get(k) for k in DATA_FIELDS}
    if mine != theirs:
        diff = "; ".join(f"data.{k}={mine[k]!r} (autoencoder: {theirs[k]!r})" for k in DATA_FIELDS
                         if mine[k] != theirs[k])
        raise InputError(f"data.autoencoder={d.autoencoder!r} was trained on other data: {diff}")
    cfg = copy.deepcopy(config)
    C, H, _ = info["image_shape"]
    cfg.data.num_channels, cfg.data.image_size, cfg.data.autoencoder = C, H, ""
    return cfg


def check_latent_shape(config, info: dict) -> None:
    c, h, _ = info["latent_shape"]
    d = config.data
    if (d.num_channels, d.image_size) != (c, h):
        raise InputError(f"data.autoencoder={d.autoencoder!r} gives latents of shape {tuple(info['latent_shape'])}, "
                         f"but the config says data.num_channels={d.num_channels}, data.image_size={d.image_size} "
                         f"(with data.autoencoder they are the latent shape the score network sees)")


def latent_dataset(config, scale: Optional[float] = None, device=None) -> Dataset:
    """The scaled latents of `config.data.autoencoder` as a Dataset (`.codec`, `.pixels` attached).
    `scale`: the one saved with a latent run (None: the estimate of the cache, for a new run)."""
    run_dir = config.data.autoencoder
    info = read_autoencoder_info(run_dir)
    pix_cfg = pixel_config(config, info)
    check_latent_shape(config, info)
    pixels = get_dataset(pix_cfg)
    ae, info, ckpt, digest = load_autoencoder(run_dir, device)
    blob = encode_dataset(ae, pixels, run_dir, digest)
    codec = LatentCodec(ae, blob["scale"] if scale is None else scale,
                        "estimated from the cached latents" if scale is None else "saved with the run")
    ds = Dataset(f"latent:{pixels.name}", codec.scale * blob["train"], codec.scale * blob["test"], is_image=True,
                 eight_bit=False, train_labels=pixels.train_labels, test_labels=pixels.test_labels,
                 num_classes=pixels.num_classes, class_names=pixels.class_names)
    ds.codec, ds.pixels, ds.autoencoder_checkpoint, ds.autoencoder_hash = codec, pixels, ckpt, digest
    ds.latent_std = blob["std"]
    return ds
