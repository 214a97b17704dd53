"""Every config of a published checkpoint builds the reference code's network: same parameter count.

The counts were measured with the reference code bases themselves (randomly initialised networks
built from their own configs, sum of p.numel() over model.parameters()):

    /tmp/refvenv18/bin/python tools/make_pretrained_fixtures.py --ref /tmp/ref18 --counts

(score_sde_pytorch at cb1f359, models built by its models/utils.py create_model; diffusers 0.31.0
UNet2DModel with the google/ddpm-* layouts written in that script). The reference's Fourier
projection W is a frozen nn.Parameter (counted there); ours is a buffer, so it is added here.
"""
import glob
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REFERENCE_COUNTS = {
    "ve_cifar10_ncsnpp_continuous": 62_758_915,
    "ve_cifar10_ncsnpp_deep_continuous": 107_587_075,
    "vp_cifar10_ddpmpp_continuous": 61_804_419,
    "vp_cifar10_ddpmpp_deep_continuous": 106_632_579,
    "subvp_cifar10_ddpmpp_continuous": 61_804_419,
    "subvp_cifar10_ddpmpp_deep_continuous": 106_632_579,
    "vp_cifar10_ddpm_continuous": 35_218_947,
    "subvp_cifar10_ddpm_continuous": 35_218_947,
    "ve_celebahq_256_ncsnpp_continuous": 65_574_549,
    "ve_ffhq_256_ncsnpp_continuous": 65_574_549,
    "ve_church_ncsnpp_continuous": 65_574_549,
    "ve_bedroom_ncsnpp_continuous": 65_574_549,
    "ve_ffhq_1024_ncsnpp_continuous": 105_785_896,
    "google_ddpm_cifar10_32": 35_746_307,
    "google_ddpm_church_256": 113_673_219,
    "google_ddpm_bedroom_256": 113_673_219,
    "google_ddpm_celebahq_256": 113_673_219,
    "google_ddpm_cat_256": 113_673_219,
}


def config_names():
    return sorted(os.path.basename(f)[:-3] for f in glob.glob(os.path.join(ROOT, "configs", "pretrained", "*.py"))
                  if not os.path.basename(f).startswith(("_", "common")))


def test_every_pretrained_config_has_a_measured_count():
    assert config_names() == sorted(REFERENCE_COUNTS)


_COUNTED = {}


def _count(config):
    """Parameters (+ the Fourier W) of the config's network, built on the meta device (no weights
    allocated); configs with the same model and data sections (e.g. the four 256^2 DDPMs) count once."""
    import models
    key = repr((config.model.to_dict(), config.data.image_size, config.data.num_channels))
    if key not in _COUNTED:
        with torch.device("meta"):
            net = models.get_model(config)
        fourier = net.embed.W.numel() if hasattr(net.embed, "W") else 0
        _COUNTED[key] = sum(p.numel() for p in net.parameters()) + fourier
    return _COUNTED[key]


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_parameter_count_matches_the_reference(name):
    from runner.config_io import load_config
    config = load_config(os.path.join(ROOT, "configs", "pretrained", f"{name}.py"))
    assert _count(config) == REFERENCE_COUNTS[name] == config.pretrained.parameters


def test_pretrained_configs_are_valid_and_bad_values_are_named():
    from configs import schema
    from configs.errors import ConfigError
    from runner.config_io import load_config
    for name in config_names():
        schema.validate_config(load_config(os.path.join(ROOT, "configs", "pretrained", f"{name}.py")))
    config = load_config(os.path.join(ROOT, "configs", "pretrained", "vp_cifar10_ddpmpp_continuous.py"))
    for field, bad in (("pretrained.format", "jax"), ("pretrained.checkpoint", 3), ("model.up_attention", "once"),
                       ("model.progressive_input", "pyramid"), ("model.fourier_mult", 0)):
        c = config.copy_and_resolve_references()
        section, key = field.split(".")
        with c.unlocked(), c[section].ignore_type():
            c[section][key] = bad
        with pytest.raises(ConfigError, match=f"config.{field} must be"):
            schema.validate_config(c)
