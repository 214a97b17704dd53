"""U-Net options of the published networks: every existing config builds the same
network as before them, and the FIR resampling has the closed forms it should.

tests/data/unet_fingerprints.json was written by `python tests/test_unet_options.py` on the
code before the options existed (commit 75b3065): parameter count, state-dict size and the
output of every config's network with seeded random float64 weights on a seeded input.
"""
import glob
import json
import os
import sys

import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINGERPRINTS = os.path.join(ROOT, "tests", "data", "unet_fingerprints.json")


def fingerprint(config, build=None):
    import models
    build = build or models.get_model
    torch.manual_seed(0)
    model = build(config).double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.2)
    if hasattr(model, "image_size"):
        x = torch.randn(2, model.num_channels, model.image_size, model.image_size, generator=g, dtype=torch.float64)
    else:
        x = torch.randn(2, config.data.dim, generator=g, dtype=torch.float64)
    t = torch.tensor([0.1, 0.7], dtype=torch.float64)
    with torch.no_grad():
        out = model(x, t)
    return {"parameters": sum(p.numel() for p in model.parameters()), "state_keys": len(model.state_dict()),
            "out_sum": float(out.sum()), "out_abs": float(out.abs().sum()), "out_first": out.flatten()[:4].tolist()}


def all_fingerprints():
    import models
    from runner.config_io import load_config
    res = {}
    for f in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
        try:
            c = load_config(f)
        except ValueError:
            continue
        if "model" not in c or c.model.name not in models.model_names():
            continue
        res[os.path.basename(f)] = fingerprint(c)
        if "classifier" in c and c.classifier.name == "encoder" and c.data.dataset != "mixture":
            res[os.path.basename(f) + ":classifier"] = fingerprint(c, models.get_classifier)
    return res


def test_existing_configs_build_the_same_networks():
    want = json.load(open(FINGERPRINTS))
    got = all_fingerprints()
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = got[name]
        assert (g["parameters"], g["state_keys"]) == (w["parameters"], w["state_keys"]), name
        for key in ("out_sum", "out_abs"):
            assert g[key] == pytest.approx(w[key], rel=1e-12, abs=1e-12), (name, key)
        assert g["out_first"] == pytest.approx(w["out_first"], rel=1e-12, abs=1e-12), name


def test_fir_with_a_box_kernel_is_average_pooling_and_nearest(gen):
    from models.resample import fir_downsample, fir_kernel_2d, fir_upsample
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    box = fir_kernel_2d((1, 1), dtype=torch.float64)
    torch.testing.assert_close(fir_downsample(x, box), F.avg_pool2d(x, 2), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fir_upsample(x, box), F.interpolate(x, scale_factor=2.0, mode="nearest"),
                               rtol=1e-12, atol=1e-12)


def test_fir_1331_keeps_constants_inside_and_is_linear_interpolation(gen):
    """[1,3,3,1]/8 upsampling = linear interpolation at the quarter points (3/4 a + 1/4 b); downsampling
    keeps a linear ramp linear, sampled at the centres of the 2x2 cells."""
    from models.resample import fir_downsample, fir_kernel_2d, fir_upsample
    k = fir_kernel_2d((1, 3, 3, 1), dtype=torch.float64)
    ones = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(fir_downsample(ones, k)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2, dtype=torch.float64))
    torch.testing.assert_close(fir_upsample(ones, k)[..., 1:-1, 1:-1], torch.ones(1, 1, 14, 14, dtype=torch.float64))
    ramp = torch.arange(8, dtype=torch.float64).expand(1, 1, 8, 8)          # x[i, j] = j
    up = fir_upsample(ramp, k)[0, 0, 4, 1:-1]                               # interior row
    want = torch.arange(1, 15, dtype=torch.float64) / 2 - 0.25                # pixel m sits at input (m - 1/2) / 2
    torch.testing.assert_close(up, want)
    down = fir_downsample(ramp, k)[0, 0, 1, 1:-1]                            # pixel i sits at input 2 i + 1/2
    torch.testing.assert_close(down, torch.tensor([2.5, 4.5], dtype=torch.float64))


@pytest.mark.parametrize("options", [
    dict(progressive="output_skip", progressive_input="input_skip", fir=True, resample_skip_conv=True),
    dict(progressive="residual", progressive_input="residual", resblock_type="ddpm"),
    dict(progressive_input="input_skip", progressive_combine="cat"),
    dict(up_attention="per_level", downsample_padding="right_bottom", resblock_type="ddpm", exact_groups=True),
])
def test_options_build_and_run(options, gen):
    from models import UNet
    net = UNet(image_size=8, num_channels=3, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
               dropout=0.0, num_groups=8 if options.get("exact_groups") else 32,
               **{"resblock_type": "biggan", **options})
    x = torch.randn(2, 3, 8, 8, generator=gen)
    out = net(x, torch.rand(2, generator=gen))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_bad_options_are_refused():
    from models import UNet
    with pytest.raises(ValueError, match="unknown progressive 'pyramid'"):
        UNet(image_size=8, nf=8, ch_mult=(1, 2), progressive="pyramid")
    with pytest.raises(ValueError, match="FIR upsampling with a conv"):
        UNet(image_size=8, nf=8, ch_mult=(1, 2), resblock_type="ddpm", fir=True)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    with open(FINGERPRINTS, "w") as f:
        json.dump(all_fingerprints(), f, indent=1)
