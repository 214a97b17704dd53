"""Guidance for `--mode sample`: class labels and the guided score function.

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
from configs.schema import parse_class_label
from training.classifier import restore_classifier
import models
import solvers
from configs.errors import InputError

def labels_for(config):
    """(labels `[B]` long tensor or None, number of samples)."""
    import torch
    label = parse_class_label(config)
    s = config.sampling
    if label is None:
        return None, s.num_samples
    if label == "all":
        K = config.model.num_classes or config.classifier.num_classes
        y = torch.arange(K).repeat_interleave(s.samples_per_class)
        return y, y.numel()
    return torch.full((s.num_samples,), label, dtype=torch.long), s.num_samples


def guided_score_fn(config, workdir, sde, model, labels, guidance=None, scale=None, classifier=None):
    """The score function `--mode sample` uses, and a description of it. `classifier`: the
    `(net, checkpoint)` of `training.classifier.restore_classifier`, restored here if None (pass
    it when building the score of several label batches)."""
    s = config.sampling
    guidance = guidance or s.guidance
    scale = float(s.guidance_scale if scale is None else scale)
    conditional = getattr(model, "num_classes", 0) > 0
    if guidance == "none":
        return models.get_score_fn(sde, model, y=labels if conditional else None), {"guidance": "none"}
    uncond = models.get_score_fn(sde, model)            # null label for conditional nets
    if guidance == "cfg":
        cond = models.get_score_fn(sde, model, y=labels)
        return solvers.classifier_free_guidance(cond, uncond, scale), {"guidance": "cfg", "w": scale}
    clf, ckpt = classifier or restore_classifier(config, s.classifier_workdir or workdir)
    if not config.classifier.noise_conditional:
        raise InputError("classifier and universal guidance need a noise-conditional classifier "
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
