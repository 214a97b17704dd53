"""Golden fixtures and parameter counts from the reference code bases (not run in CI).

Builds small networks (nf 16-32, 8x8 or 16x16 images) with score_sde_pytorch's and diffusers'
own code, gives them random weights, saves them in their native checkpoint formats together
with their outputs on fixed inputs, under tests/data/pretrained/. tests/test_pretrained_import.py
imports each file with `--mode import` / `runner.importer` and matches those outputs. With
--counts it prints the parameter counts of the published architectures instead (the numbers
written in tests/test_pretrained_configs.py).

The reference code must be fetched by hand (never at run time):

    git clone https://github.com/yang-song/score_sde_pytorch /tmp/ref18   # or a git archive of it
    python -m venv --system-site-packages /tmp/refvenv18
    /tmp/refvenv18/bin/pip install --no-deps diffusers==0.31.0 safetensors huggingface_hub==0.36.2
    /tmp/refvenv18/bin/python tools/make_pretrained_fixtures.py --ref /tmp/ref18 --out tests/data/pretrained
    /tmp/refvenv18/bin/python tools/make_pretrained_fixtures.py --ref /tmp/ref18 --counts

Run it from the repository root with the script path (so that the reference's `models`,
`sde_lib` and `configs` packages, not scoresde's, are the ones imported). score_sde's CUDA
`op` extension cannot be built on a CPU-only machine; its `upfirdn2d.py` is loaded with the
extension build (`torch.utils.cpp_extension.load`) replaced by a no-op, so the reference's own
CPU path (`upfirdn2d_native`, which its `upfirdn2d` calls for CPU tensors) is what runs.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import types
import zlib

import torch

# score_sde_pytorch reference configs of the published checkpoints (README table), by our name
SCORE_SDE_PUBLISHED = {
    "score_sde_ve_cifar10_ncsnpp_continuous": "configs.ve.cifar10_ncsnpp_continuous",
    "score_sde_ve_cifar10_ncsnpp_deep_continuous": "configs.ve.cifar10_ncsnpp_deep_continuous",
    "score_sde_vp_cifar10_ddpmpp_continuous": "configs.vp.cifar10_ddpmpp_continuous",
    "score_sde_vp_cifar10_ddpmpp_deep_continuous": "configs.vp.cifar10_ddpmpp_deep_continuous",
    "score_sde_subvp_cifar10_ddpmpp_continuous": "configs.subvp.cifar10_ddpmpp_continuous",
    "score_sde_subvp_cifar10_ddpmpp_deep_continuous": "configs.subvp.cifar10_ddpmpp_deep_continuous",
    "score_sde_vp_cifar10_ddpm_continuous": "configs.vp.ddpm.cifar10_continuous",
    "score_sde_subvp_cifar10_ddpm_continuous": "configs.subvp.cifar10_ddpm_continuous",
    "score_sde_ve_celebahq_256_ncsnpp_continuous": "configs.ve.celebahq_256_ncsnpp_continuous",
    "score_sde_ve_ffhq_256_ncsnpp_continuous": "configs.ve.ffhq_256_ncsnpp_continuous",
    "score_sde_ve_church_ncsnpp_continuous": "configs.ve.church_ncsnpp_continuous",
    "score_sde_ve_bedroom_ncsnpp_continuous": "configs.ve.bedroom_ncsnpp_continuous",
    "score_sde_ve_ffhq_1024_ncsnpp_continuous": "configs.ve.ffhq_ncsnpp_continuous",
}

# diffusers UNet2DModel layouts of google/ddpm-* (the DDPM paper's networks: Ho et al. 2020, App. B)
_DDPM_COMMON = dict(in_channels=3, out_channels=3, layers_per_block=2, act_fn="silu", attention_head_dim=None,
                    center_input_sample=False, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1,
                    mid_block_scale_factor=1, norm_eps=1e-6, norm_num_groups=32, time_embedding_type="positional")
DIFFUSERS_PUBLISHED = {
    "diffusers_ddpm_cifar10_32": dict(
        _DDPM_COMMON, sample_size=32, block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
    "diffusers_ddpm_256": dict(     # google/ddpm-{church,bedroom,cat,celebahq}-256 (and ddpm-ema-*)
        _DDPM_COMMON, sample_size=256, block_out_channels=(128, 128, 256, 256, 512, 512),
        down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4),
}


def load_reference(ref: str):
    """Put score_sde_pytorch on sys.path, with its `op` package served by its CPU code path."""
    sys.path.insert(0, os.path.abspath(ref))
    import torch.utils.cpp_extension as cpp_extension
    real_load = cpp_extension.load
    cpp_extension.load = lambda *a, **k: None        # the CUDA build; unused on CPU tensors
    try:
        spec = importlib.util.spec_from_file_location("op.upfirdn2d", os.path.join(ref, "op", "upfirdn2d.py"))
        upfirdn = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(upfirdn)
    finally:
        cpp_extension.load = real_load
    op = types.ModuleType("op")
    op.upfirdn2d = upfirdn.upfirdn2d
    sys.modules["op"], sys.modules["op.upfirdn2d"] = op, upfirdn
    import models.ddpm  # noqa: F401  (registers 'ddpm')
    import models.ncsnpp  # noqa: F401  (registers 'ncsnpp')
    from models import utils as mutils
    return mutils


def reference_config(module: str):
    config = importlib.import_module(module).get_config()
    config.device = torch.device("cpu")
    return config


def count(model):
    return sum(p.numel() for p in model.parameters())


def print_counts(ref: str):
    mutils = load_reference(ref)
    out = {}
    for name, module in SCORE_SDE_PUBLISHED.items():
        torch.manual_seed(0)
        model = mutils.create_model(reference_config(module))
        out[name] = count(model)
        print(f"{name}: {out[name]:,} parameters ({module})", flush=True)
        del model
    from diffusers import UNet2DModel
    for name, kw in DIFFUSERS_PUBLISHED.items():
        out[name] = count(UNet2DModel(**kw))
        print(f"{name}: {out[name]:,} parameters (diffusers UNet2DModel)", flush=True)
    print(json.dumps(out, indent=1))


# ----------------------------------------------------------------------------------------------
# fixtures: small configurations of the same code paths

def _small(config, **model):
    config.data.image_size = model.pop("image_size", 8)
    config.model.nf = model.pop("nf", 8)
    config.model.ch_mult = model.pop("ch_mult", (1, 2))
    config.model.num_res_blocks = model.pop("num_res_blocks", 1)
    config.model.attn_resolutions = model.pop("attn_resolutions", (4,))
    config.model.dropout = 0.0
    for k, v in model.items():
        config.model[k] = v
    return config


SCORE_SDE_FIXTURES = {
    # name: (reference config module, overrides)
    "score_sde_ve_ncsnpp": ("configs.ve.cifar10_ncsnpp_continuous", {}),
    "score_sde_ve_ncsnpp_pyramids": ("configs.ve.church_ncsnpp_continuous", dict(ch_mult=(1, 1, 2))),
    "score_sde_vp_ddpmpp": ("configs.vp.cifar10_ddpmpp_continuous", {}),
    # models/ddpm.py hard-codes 32 GroupNorm groups: 32 channels at least; one level keeps it small
    "score_sde_subvp_ddpm": ("configs.subvp.cifar10_ddpm_continuous",
                             dict(nf=32, ch_mult=(1,), attn_resolutions=(8,))),
}


def _randomise(model, gen):
    """Random weights everywhere (the reference zero-initialises the last conv of every block)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if p.dim() >= 2:
                fan_in = p[0].numel() if p.dim() == 4 else p.shape[0]     # NIN weights are [in, out]
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            elif "GroupNorm" in name or "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def make_score_sde_fixtures(ref: str, out: str):
    mutils = load_reference(ref)
    import sde_lib
    from models.ema import ExponentialMovingAverage
    manifest = {}
    for name, (module, over) in SCORE_SDE_FIXTURES.items():
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        config = _small(reference_config(module), **dict(over))
        model = mutils.create_model(config)                     # DataParallel: 'module.' keys
        _randomise(model, gen)
        ema = ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
        with torch.no_grad():                                   # an EMA that differs from the model
            for s in ema.shadow_params:
                s.add_(0.02 * torch.randn(s.shape, generator=gen))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        if name == "score_sde_vp_ddpmpp":                        # one fixture with real optimizer state
            model(torch.randn(2, 3, 8, 8, generator=gen), torch.tensor([10.0, 500.0])).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        # as score_sde_pytorch/utils.py save_checkpoint writes it
        state = {"optimizer": optimizer.state_dict(), "model": model.state_dict(), "ema": ema.state_dict(),
                 "step": 1234}
        torch.save(state, os.path.join(out, f"{name}.pth"))
        sde_name = config.training.sde
        if sde_name == "vesde":
            sde = sde_lib.VESDE(config.model.sigma_min, config.model.sigma_max, config.model.num_scales)
        elif sde_name == "vpsde":
            sde = sde_lib.VPSDE(config.model.beta_min, config.model.beta_max, config.model.num_scales)
        else:
            sde = sde_lib.subVPSDE(config.model.beta_min, config.model.beta_max, config.model.num_scales)
        size, ch = config.data.image_size, config.data.num_channels
        x0 = torch.rand(4, ch, size, size, generator=gen)            # data in [0, 1]
        if config.data.centered:
            x0 = 2 * x0 - 1
        t = torch.tensor([1e-3, 0.1, 0.5, 1.0])
        mean, std = sde.marginal_prob(x0, t)
        x = mean + std[:, None, None, None] * torch.randn(x0.shape, generator=gen)
        outputs = {"x": x, "t": t}
        # VP / sub-VP: the reference's score at float64 times. Its std, sqrt(1 - exp(2 log m)) (VP) and
        # 1 - exp(2 log m) (sub-VP), cancels in float32 at small t (2.4e-4 relative at t = 1e-3 for
        # sub-VP); with float64 t the same code computes it in float64 (the network still runs in float32:
        # its sinusoidal embedding casts the label). VE's Fourier layer needs float32 labels.
        t_score = t if sde_name == "vesde" else t.double()
        for which in ("model", "ema"):
            if which == "ema":
                ema.copy_to(model.parameters())
            with torch.no_grad():
                score_fn = mutils.get_score_fn(sde, model, train=False, continuous=True)
                label = std if sde_name == "vesde" else t * 999
                outputs[f"{which}_label"] = label
                outputs[f"{which}_net"] = model(x, label)
                outputs[f"{which}_score"] = score_fn(x, t_score).float()
                outputs[f"{which}_score_float32_times"] = score_fn(x, t)
        torch.save(outputs, os.path.join(out, f"{name}.outputs.pt"))
        manifest[name] = dict(format="score_sde", reference_config=module, sde=sde_name,
                              centered=bool(config.data.centered), image_size=size, nf=config.model.nf,
                              ch_mult=list(config.model.ch_mult), num_res_blocks=config.model.num_res_blocks,
                              attn_resolutions=list(config.model.attn_resolutions),
                              sigma_min=config.model.sigma_min, sigma_max=config.model.sigma_max,
                              beta_min=config.model.beta_min, beta_max=config.model.beta_max,
                              parameters=count(model))
        print(f"{name}: {count(model):,} parameters", flush=True)
    return manifest


def make_diffusers_fixture(out: str):
    import safetensors.torch  # noqa: F401  (save_pretrained needs it imported)
    from diffusers import UNet2DModel
    gen = torch.Generator().manual_seed(18)
    torch.manual_seed(0)
    kw = dict(_DDPM_COMMON, sample_size=8, block_out_channels=(16, 16), layers_per_block=1, norm_num_groups=8,
              down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    model = UNet2DModel(**kw).eval()
    _randomise(model, gen)
    model.save_pretrained(os.path.join(out, "diffusers_ddpm_tiny"), safe_serialization=True)
    torch.save(model.state_dict(), os.path.join(out, "diffusers_ddpm_tiny", "diffusion_pytorch_model.bin"))
    x = torch.randn(4, 3, 8, 8, generator=gen)
    steps = torch.tensor([0, 10, 500, 999])
    with torch.no_grad():
        net = model(x, steps).sample
    torch.save({"x": x, "step": steps, "net": net}, os.path.join(out, "diffusers_ddpm_tiny.outputs.pt"))
    print(f"diffusers_ddpm_tiny: {count(model):,} parameters", flush=True)
    return {"diffusers_ddpm_tiny": dict(format="diffusers", unet2d=json.loads(json.dumps(kw)),
                                        parameters=count(model))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", required=True, help="a checkout of yang-song/score_sde_pytorch")
    p.add_argument("--out", default="tests/data/pretrained")
    p.add_argument("--counts", action="store_true", help="print the published architectures' parameter counts")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.counts:
        print_counts(args.ref)
        return
    os.makedirs(args.out, exist_ok=True)
    manifest = make_score_sde_fixtures(args.ref, args.out)
    manifest.update(make_diffusers_fixture(args.out))
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
