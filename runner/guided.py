"""Guidance for `--mode sample` (issue 10): class labels and the guided score function.

    sampling.class_label      "none" | an int (as text, e.g. "3") | "all" (one row of
                              sampling.samples_per_class samples per class)
    sampling.guidance         none | classifier | cfg | universal
    sampling.guidance_scale   classifier: scale of grad log p_t(y | x); cfg: w in (1 + w) s(x|y) - w s(x);
                              universal: scale of grad of -log p(y | x0_hat)
    sampling.classifier_workdir  where `--mode train_classifier` wrote the guidance classifier
                              (default: this workdir)

Without guidance a class-conditional net samples its class (or the null label for "none");
classifier and universal guidance use the net's null label (or an unconditional net) plus the
noise-conditional classifier.
"""
from __future__ import annotations

GUIDANCE = ("none", "classifier", "cfg", "universal")


def parse_class_label(config):
    """None, an int, or "all"."""
    text = str(config.sampling.get("class_label", "none")).strip().lower()
    if text in ("none", ""):
        return None
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"config.sampling.class_label must be 'none', an int or 'all', got {text!r}") from None


def check_guidance_config(config) -> None:
    """Fail before any work on inconsistent guidance settings."""
    s = config.sampling
    g = s.get("guidance", "none")
    if g not in GUIDANCE:
        raise ValueError(f"unknown sampling.guidance {g!r}; expected one of {list(GUIDANCE)}")
    label = parse_class_label(config)
    K = int(config.model.get("num_classes", 0))
    if g != "none" and label is None:
        raise ValueError(f"sampling.guidance={g!r} needs sampling.class_label (an int or 'all')")
    if g == "cfg" and K == 0:
        raise ValueError("sampling.guidance='cfg' needs a class-conditional model (model.num_classes > 0)")
    if g == "none" and label is not None and K == 0:
        raise ValueError("sampling.class_label without guidance needs a class-conditional model "
                         "(model.num_classes > 0); or use sampling.guidance=classifier")
    n = K if K else int(config.classifier.num_classes) if g in ("classifier", "universal") else 0
    if isinstance(label, int) and not (0 <= label < max(n, 1)):
        raise ValueError(f"sampling.class_label={label} outside [0, {n})")
    if g == "cfg" or g == "classifier" or g == "universal":
        v = s.get("guidance_scale", 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"sampling.guidance_scale must be a number, got {v!r}")
    if label == "all" and (not isinstance(s.get("samples_per_class", 0), int) or s.samples_per_class < 1):
        raise ValueError(f"sampling.samples_per_class must be an int >= 1, got {s.get('samples_per_class')!r}")


def labels_for(config):
    """(labels `[B]` long tensor or None, number of samples)."""
    import torch
    label = parse_class_label(config)
    s = config.sampling
    if label is None:
        return None, s.num_samples
    if label == "all":
        K = int(config.model.get("num_classes", 0)) or int(config.classifier.num_classes)
        y = torch.arange(K).repeat_interleave(s.samples_per_class)
        return y, y.numel()
    return torch.full((s.num_samples,), label, dtype=torch.long), s.num_samples


def guided_score_fn(config, workdir, sde, model, labels, guidance=None, scale=None, classifier=None):
    """The score function `--mode sample` uses, and a description of it. `classifier`: the
    `(net, checkpoint)` of `training.classifier.restore_classifier`, restored here if None (pass
    it when building the score of several label batches)."""
    import models
    import solvers
    s = config.sampling
    guidance = guidance or s.get("guidance", "none")
    scale = float(s.get("guidance_scale", 1.0) if scale is None else scale)
    conditional = getattr(model, "num_classes", 0) > 0
    if guidance == "none":
        return models.get_score_fn(sde, model, y=labels if conditional else None), {"guidance": "none"}
    uncond = models.get_score_fn(sde, model)            # null label for conditional nets
    if guidance == "cfg":
        cond = models.get_score_fn(sde, model, y=labels)
        return solvers.classifier_free_guidance(cond, uncond, scale), {"guidance": "cfg", "w": scale}
    from training.classifier import restore_classifier
    clf, ckpt = classifier or restore_classifier(config, s.get("classifier_workdir", "") or workdir)
    if not config.classifier.noise_conditional:
        raise ValueError("classifier and universal guidance need a noise-conditional classifier "
                         "(classifier.noise_conditional=True)")
    clf_fn = models.get_classifier_fn(sde, clf)
    if guidance == "classifier":
        return (solvers.classifier_guidance(uncond, clf_fn, labels, scale),
                {"guidance": "classifier", "scale": scale, "classifier": ckpt})
    import torch

    def loss(x0):      # -log p(y | x0_hat) by the classifier at its smallest noise level
        t = torch.full((x0.shape[0],), sde.eps, dtype=x0.dtype, device=x0.device)
        return -torch.log_softmax(clf_fn(x0, t), 1).gather(1, labels[:, None].to(x0.device))[:, 0]
    return (solvers.universal_guidance(uncond, loss, scale, sde=sde),
            {"guidance": "universal", "scale": scale, "classifier": ckpt})
