"""Weights of published networks -> scoresde's UNet state dict (pure functions of tensors).

- score_sde_pytorch (Song et al. 2021): NCSNpp and DDPM keep every layer in one flat
  `all_modules` list, in construction order. scoresde's UNet builds its layers in the same order
  (`reference_order` lists them), so the i-th reference module maps to the i-th of ours; inside
  a module the names map by table (`NIN` 1x1 layers store W as [in, out]: transposed here).
  The EMA of a score_sde checkpoint is a positional list, `shadow_params`, over the parameters
  that require grad: the state dict's keys without buffers (`sigmas`) and without the frozen
  Fourier `W` (`score_sde_ema`).
- diffusers UNet2DModel (google/ddpm-*): named blocks (`down_blocks.i.resnets.j`, ...), mapped
  from the position of each of our layers.

Every function checks the result against the target model: a missing or unexpected key, or the
first shape that differs, raises ConversionError naming the source key and both shapes.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from .layers import AttnBlock, ResBlock
from .resample import Downsample, Upsample
from .unet import Combine, PyramidHead, UNet

Tensor = torch.Tensor


FORMATS = ("score_sde", "diffusers")      # config.pretrained.format


class ConversionError(ValueError):
    """Weights that do not fit the network built from the config."""


# ----------------------------------------------------------------------------------------------
# our layers in the reference's construction order: (our prefix, kind)

def reference_order(model: UNet) -> List[Tuple[str, str]]:
    """(prefix in our state dict, kind) of every layer, in score_sde's `all_modules` order."""
    out = []
    if "W" in dict(model.embed.named_buffers()):
        out.append(("embed", "fourier"))
    out += [("temb_mlp.0", "plain"), ("temb_mlp.2", "plain"), ("conv_in", "plain")]

    def add(prefix, layer):
        if isinstance(layer, PyramidHead):
            out.extend([(prefix + ".norm", "plain"), (prefix + ".conv", "plain")])
        else:
            out.append((prefix, _kind(layer)))
    for i, layer in enumerate(model.down):
        add(f"down.{i}", layer)
    for i, layer in enumerate(model.mid):
        add(f"mid.{i}", layer)
    for i, layer in enumerate(model.up):
        add(f"up.{i}", layer)
    if hasattr(model, "norm_out"):
        out += [("norm_out", "plain"), ("conv_out", "plain")]
    return out


def _kind(layer: nn.Module) -> str:
    for cls, kind in ((ResBlock, "res"), (AttnBlock, "attn"), (Downsample, "resample"), (Upsample, "resample"),
                      (Combine, "combine")):
        if isinstance(layer, cls):
            return kind
    raise TypeError(f"no weight mapping for {type(layer).__name__}")


_SCORE_SDE_NAMES = {
    "res": {"GroupNorm_0": "norm1", "Conv_0": "conv1", "Dense_0": "temb", "GroupNorm_1": "norm2",
            "Conv_1": "conv2", "Conv_2": "skip", "NIN_0": "skip"},
    "resample": {"Conv_0": "conv", "Conv2d_0": "conv"},
    "combine": {"Conv_0": "conv"},
}


def _nin(w: Tensor) -> Tensor:
    """score_sde's NIN weight [in, out] -> a 1x1 conv weight [out, in, 1, 1]."""
    return w.t()[:, :, None, None]


def _map_score_sde_module(kind: str, prefix: str, params: Dict[str, Tensor], src: str, out: dict, origin: dict):
    def put(ours, value, theirs):
        out[f"{prefix}.{ours}"] = value
        origin[f"{prefix}.{ours}"] = (f"{src}.{theirs}", tuple(value.shape))
    if kind == "fourier":
        for name, v in params.items():
            put(name, v, name)
        return
    if kind == "plain":
        for name, v in params.items():
            put(name, v, name)
        return
    if kind == "attn":
        for name, v in params.items():
            sub, leaf = name.split(".", 1)
            if sub == "GroupNorm_0":
                put(f"norm.{leaf}", v, name)
            elif sub == "NIN_3":
                put("proj.weight" if leaf == "W" else "proj.bias", _nin(v) if leaf == "W" else v, name)
            elif sub not in ("NIN_0", "NIN_1", "NIN_2"):
                put(name, v, name)         # unknown: reported as unexpected below
        if all(f"NIN_{j}.W" in params for j in range(3)):
            put("qkv.weight", torch.cat([_nin(params[f"NIN_{j}.W"]) for j in range(3)]), "NIN_{0,1,2}.W")
            put("qkv.bias", torch.cat([params[f"NIN_{j}.b"] for j in range(3)]), "NIN_{0,1,2}.b")
        return
    table = _SCORE_SDE_NAMES[kind]
    for name, v in params.items():
        sub, leaf = name.split(".", 1)
        ours = table.get(sub, sub)
        if sub.startswith("NIN_"):
            put(f"{ours}.{'weight' if leaf == 'W' else 'bias'}", _nin(v) if leaf == "W" else v, name)
        else:
            put(f"{ours}.{leaf}", v, name)


def _strip_module(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Drop DataParallel's `module.` prefix."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def from_score_sde(state_dict: Dict[str, Tensor], model: UNet, what: str = "model") -> Dict[str, Tensor]:
    """A score_sde_pytorch NCSNpp/DDPM state dict (with or without `module.`) -> ours for `model`."""
    sd = _strip_module(state_dict)
    groups: Dict[int, Dict[str, Tensor]] = {}
    for key, v in sd.items():
        if key == "sigmas":            # the reference's noise-level table (a buffer, unused by continuous models)
            continue
        parts = key.split(".", 2)
        if len(parts) != 3 or parts[0] != "all_modules" or not parts[1].isdigit():
            raise ConversionError(f"{what}: unexpected key {key!r}; expected score_sde_pytorch's "
                                  f"'all_modules.<i>.<name>' keys (an NCSNpp or DDPM model)")
        groups.setdefault(int(parts[1]), {})[parts[2]] = v
    order = reference_order(model)
    if sorted(groups) != list(range(len(groups))) or len(groups) != len(order):
        raise ConversionError(f"{what}: the checkpoint has {len(groups)} layers (all_modules), the network of the "
                              f"config has {len(order)}; the config does not describe this checkpoint's architecture")
    out, origin = {}, {}
    for i, (prefix, kind) in enumerate(order):
        _map_score_sde_module(kind, prefix, groups[i], f"all_modules.{i}", out, origin)
    return _check(out, origin, model, what)


def score_sde_ema(state_dict: Dict[str, Tensor], shadow_params: Sequence[Tensor], model: UNet) -> Dict[str, Tensor]:
    """The EMA weights of a score_sde checkpoint: `shadow_params` follow the order of the model's
    trainable parameters (state dict keys without the `sigmas` buffer and the frozen Fourier W)."""
    sd = _strip_module(state_dict)
    order = reference_order(model)
    fourier = "all_modules.0.W" if order and order[0][1] == "fourier" else None
    keys = [k for k in sd if k != "sigmas" and k != fourier]
    if not isinstance(shadow_params, (list, tuple)) or not all(torch.is_tensor(p) for p in shadow_params):
        raise ConversionError("ema.shadow_params: expected a list of tensors (score_sde's ExponentialMovingAverage)")
    if len(shadow_params) != len(keys):
        raise ConversionError(f"ema.shadow_params holds {len(shadow_params)} tensors, the model's trainable "
                              f"parameters are {len(keys)}")
    ema = dict(sd)
    for key, p in zip(keys, shadow_params):
        if tuple(p.shape) != tuple(sd[key].shape):
            raise ConversionError(f"ema.shadow_params: the tensor for {key!r} has shape {tuple(p.shape)}, "
                                  f"the model's has {tuple(sd[key].shape)}")
        ema[key] = p
    return from_score_sde(ema, model, what="ema")


# ----------------------------------------------------------------------------------------------
# diffusers UNet2DModel

_DIFFUSERS_RES = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "temb", "norm2": "norm2",
                  "conv2": "conv2", "conv_shortcut": "skip"}
_DIFFUSERS_ATTN = {"to_q": 0, "to_k": 1, "to_v": 2, "query": 0, "key": 1, "value": 2}


def _diffusers_path(kinds, layers, ours, blocks, resample_kind, resample_cls, resamplers):
    """One path (down or up) of UNet2DModel: level i's resnets / attentions, then its resampler."""
    out, level, block = [], 0, -1
    for i, (kind, layer) in enumerate(zip(kinds, layers)):
        if kind == "res":
            block += 1
            out.append((f"{ours}.{i}", f"{blocks}.{level}.resnets.{block}", "res"))
        elif kind == "attn":
            out.append((f"{ours}.{i}", f"{blocks}.{level}.attentions.{block}", "attn"))
        elif kind == resample_kind and isinstance(layer, resample_cls):
            out.append((f"{ours}.{i}", f"{blocks}.{level}.{resamplers}.0", "plain"))
            level, block = level + 1, -1
        else:
            raise ConversionError("the config's network is not in diffusers' UNet2DModel layout "
                                  "(use model.name = 'diffusers_ddpm')")
    return out


def diffusers_order(model: UNet) -> List[Tuple[str, str, str]]:
    """(our prefix, diffusers prefix, kind) of every layer of a UNet in the UNet2DModel layout."""
    out = [("temb_mlp.0", "time_embedding.linear_1", "plain"), ("temb_mlp.2", "time_embedding.linear_2", "plain"),
           ("conv_in", "conv_in", "plain")]
    out += _diffusers_path(model._down_kinds, model.down, "down", "down_blocks", "down", Downsample, "downsamplers")
    out += [("mid.0", "mid_block.resnets.0", "res"), ("mid.1", "mid_block.attentions.0", "attn"),
            ("mid.2", "mid_block.resnets.1", "res")]
    out += _diffusers_path(model._up_kinds, model.up, "up", "up_blocks", "up", Upsample, "upsamplers")
    return out + [("norm_out", "conv_norm_out", "plain"), ("conv_out", "conv_out", "plain")]


def from_diffusers(state_dict: Dict[str, Tensor], model: UNet) -> Dict[str, Tensor]:
    """A diffusers UNet2DModel state dict (google/ddpm-* layout) -> ours for `model`."""
    sd = dict(state_dict)
    out, origin, used = {}, {}, set()

    def take(theirs, ours, value=None):
        used.add(theirs)
        v = sd[theirs] if value is None else value
        out[ours] = v
        origin[ours] = (theirs, tuple(v.shape))
    for ours, theirs, kind in diffusers_order(model):
        mine = {k[len(theirs) + 1:]: k for k in sd if k.startswith(theirs + ".")}
        if kind == "plain":
            for leaf, key in mine.items():
                take(key, f"{ours}.{leaf}")
        elif kind == "res":
            for leaf, key in mine.items():
                sub, rest = leaf.split(".", 1)
                take(key, f"{ours}.{_DIFFUSERS_RES.get(sub, sub)}.{rest}")
        else:  # attention: separate q, k, v linears -> one 1x1 conv
            qkv_w, qkv_b = [None] * 3, [None] * 3
            for leaf, key in mine.items():
                sub, rest = leaf.rsplit(".", 1)
                if sub == "group_norm":
                    take(key, f"{ours}.norm.{rest}")
                elif sub in ("to_out.0", "proj_attn"):
                    v = sd[key]
                    take(key, f"{ours}.proj.{rest}", v[:, :, None, None] if rest == "weight" else v)
                elif sub in _DIFFUSERS_ATTN:
                    used.add(key)
                    (qkv_w if rest == "weight" else qkv_b)[_DIFFUSERS_ATTN[sub]] = sd[key]
                else:
                    take(key, f"{ours}.{leaf}")
            if all(w is not None for w in qkv_w + qkv_b):
                w = torch.cat([x[:, :, None, None] for x in qkv_w])
                out[f"{ours}.qkv.weight"], origin[f"{ours}.qkv.weight"] = w, (f"{theirs}.to_{{q,k,v}}.weight",
                                                                             tuple(w.shape))
                b = torch.cat(qkv_b)
                out[f"{ours}.qkv.bias"], origin[f"{ours}.qkv.bias"] = b, (f"{theirs}.to_{{q,k,v}}.bias", tuple(b.shape))
    extra = sorted(set(sd) - used)
    if extra:
        raise ConversionError(f"unexpected key {extra[0]!r} (shape {tuple(sd[extra[0]].shape)}) for the config's "
                              f"network ({len(extra)} unused); the config does not describe this checkpoint")
    return _check(out, origin, model, "diffusers")


# ----------------------------------------------------------------------------------------------

def _check(out: Dict[str, Tensor], origin: dict, model: nn.Module, what: str) -> Dict[str, Tensor]:
    target = model.state_dict()
    own = {name for name, _ in model.named_buffers()}     # e.g. the sinusoidal embedding's frequencies
    for key, want in target.items():
        if key not in out and key in own:
            out[key] = want
            continue
        if key not in out:
            raise ConversionError(f"{what}: the checkpoint has no weights for the config's layer {key!r} "
                                  f"(shape {tuple(want.shape)}); the config does not describe this checkpoint")
        got = out[key]
        if tuple(got.shape) != tuple(want.shape):
            src, shape = origin[key]
            raise ConversionError(f"{what}: shape mismatch at {src!r}: the checkpoint has {shape}, the config's "
                                  f"network expects {tuple(want.shape)} (as {key!r})")
    extra = sorted(set(out) - set(target))
    if extra:
        src, shape = origin[extra[0]]
        raise ConversionError(f"{what}: unexpected weights {src!r} (shape {shape}) for the config's network")
    return {k: out[k].to(target[k].dtype).contiguous() for k in target}
