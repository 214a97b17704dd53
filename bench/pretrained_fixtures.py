"""Agreement of imported reference fixtures with the reference code's own outputs.

For every fixture under tests/data/pretrained/ (made by tools/make_pretrained_fixtures.py from
score_sde_pytorch and diffusers with random weights): import it with runner.importer.read_pretrained
and the config of its published family shrunk to the fixture's size, and report the relative
error ||ours - reference|| / ||reference|| of the score (model and EMA weights) over the fixture's
4 inputs (t = 1e-3, 0.1, 0.5, 1), the largest per-input error, and the network output on the
reference's own labels. Writes bench/results/pretrained_fixtures.json.

    python bench/pretrained_fixtures.py
"""
from __future__ import annotations

import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402
import sde_lib  # noqa: E402
from runner.config_io import apply_override, load_config  # noqa: E402
from runner.importer import read_pretrained  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data", "pretrained")
SCORE_SDE = {"score_sde_ve_ncsnpp": "ve_cifar10_ncsnpp_continuous",
             "score_sde_ve_ncsnpp_pyramids": "ve_church_ncsnpp_continuous",
             "score_sde_vp_ddpmpp": "vp_cifar10_ddpmpp_continuous",
             "score_sde_subvp_ddpm": "subvp_cifar10_ddpm_continuous"}


def rel(a, b):
    return float((a - b).norm() / b.norm())


def worst(a, b):
    return max(rel(a[i], b[i]) for i in range(a.shape[0]))


def config_for(name, checkpoint, overrides):
    config = load_config(os.path.join(ROOT, "configs", "pretrained", f"{name}.py"))
    apply_override(config, "pretrained.checkpoint", checkpoint)
    for key, val in overrides.items():
        apply_override(config, key, str(val))
    return config


def score_sde_rows(manifest):
    rows = {}
    for fixture, published in SCORE_SDE.items():
        m = manifest[fixture]
        config = config_for(published, os.path.join(DATA, f"{fixture}.pth"), {
            "model.nf": m["nf"], "model.ch_mult": tuple(m["ch_mult"]), "model.num_res_blocks": m["num_res_blocks"],
            "model.attn_resolutions": tuple(m["attn_resolutions"]), "data.image_size": m["image_size"]})
        weights, ema_weights, _, _, _ = read_pretrained(config)
        out = torch.load(os.path.join(DATA, f"{fixture}.outputs.pt"), weights_only=True)
        sde = sde_lib.get_sde(config)
        x, t = out["x"], out["t"]
        row = {"config": f"configs/pretrained/{published}.py", "sde": m["sde"], "parameters": m["parameters"]}
        for which, sd in (("model", weights), ("ema", ema_weights)):
            net = models.get_model(config)
            net.load_state_dict(sd)
            score_fn = models.get_score_fn(sde, net)
            with torch.no_grad():
                score = score_fn(x, t) if m["centered"] else 2 * score_fn(2 * x - 1, t)
                label = out[f"{which}_label"]
                if m["sde"] == "vesde":
                    y = net(x, torch.log(label)) / label[:, None, None, None]
                else:
                    y = net(x, label)
            row[which] = {"score_rel": rel(score, out[f"{which}_score"]),
                          "score_worst_input": worst(score, out[f"{which}_score"]),
                          "net_rel": rel(y, out[f"{which}_net"]),
                          "reference_float32_times_vs_float64": rel(out[f"{which}_score_float32_times"],
                                                                    out[f"{which}_score"])}
        rows[fixture] = row
    return rows


def diffusers_rows():
    rows = {}
    over = {"model.nf": 16, "model.ch_mult": (1, 1), "model.num_res_blocks": 1, "model.attn_resolutions": (4,),
            "data.image_size": 8, "model.num_groups": 8}
    out = torch.load(os.path.join(DATA, "diffusers_ddpm_tiny.outputs.pt"), weights_only=True)
    for f in ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"):
        config = config_for("google_ddpm_cifar10_32", os.path.join(DATA, "diffusers_ddpm_tiny", f), over)
        weights, _, _, _, _ = read_pretrained(config)
        net = models.get_model(config).eval()          # dropout off (get_score_fn does it too)
        net.load_state_dict(weights)
        sde = sde_lib.get_sde(config)
        lam = sde.discrete_log_snrs()[out["step"]]                 # t_k: lambda(t_k) = lambda_k, then the score
        log_m2 = -torch.log1p(torch.exp(-2 * lam))
        a, c = (sde.beta_max - sde.beta_min) / 2, sde.beta_min
        t = (-c + torch.sqrt(c * c - 4 * a * log_m2)) / (2 * a)
        want = -out["net"] / torch.sqrt(-torch.expm1(log_m2)).float()[:, None, None, None]
        with torch.no_grad():
            y = net(out["x"], out["step"].float())
            score = models.get_score_fn(sde, net)(out["x"], t.float())
        rows[f"diffusers_ddpm_tiny/{f}"] = {"config": "configs/pretrained/google_ddpm_cifar10_32.py",
                                            "net_rel": rel(y, out["net"]), "score_rel": rel(score, want),
                                            "score_worst_input": worst(score, want)}
    return rows


def main():
    torch.set_num_threads(1)
    manifest = json.load(open(os.path.join(DATA, "manifest.json")))
    result = {"score_sde": score_sde_rows(manifest), "diffusers": diffusers_rows(),
              "note": "relative errors ||ours - reference|| / ||reference|| over 4 inputs, float32"}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    path = os.path.join(ROOT, "bench", "results", "pretrained_fixtures.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    for group in ("score_sde", "diffusers"):
        for name, row in result[group].items():
            parts = [f"{k} {v['score_rel']:.1e} (worst input {v['score_worst_input']:.1e}, net {v['net_rel']:.1e})"
                     for k, v in row.items() if isinstance(v, dict)] or \
                    [f"score {row['score_rel']:.1e} (worst input {row['score_worst_input']:.1e}), "
                     f"net {row['net_rel']:.1e}"]
            print(f"{name}: " + "; ".join(parts))
    print(path)


if __name__ == "__main__":
    main()
