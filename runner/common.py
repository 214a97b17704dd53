"""Helpers shared by the modes: data shapes, JSON-safe reports, the restored score function."""
from __future__ import annotations


def data_shape(model):
    if hasattr(model, "image_size"):
        return (model.num_channels, model.image_size, model.image_size)
    return (model.dim,)


def json_safe(v):
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return repr(v)


def restored_score_fn(config, workdir, use_ema):
    """(sde, model, score_fn, step, checkpoint) of the latest checkpoint in `workdir`."""
    import models
    import sde_lib
    from training import restore_model
    sde = sde_lib.get_sde(config)
    model, step, ckpt = restore_model(config, workdir, use_ema=use_ema)
    return sde, model, models.get_score_fn(sde, model), step, ckpt
