"""`SampleEvaluator`: every sample-quality metric of one sample set against a fixed reference.

Built once per study from the data set; `evaluate(x)` returns a flat dict of numbers:

- in the feature space of `features.get_feature_extractor` (a classifier trained on the data
  for labelled images, a random CNN for unlabelled images, the coordinates for vectors):
  `fd` (Fréchet distance), `kid` and `kid_se`, `precision`/`recall` (k = 3),
  `density`/`coverage` (k = 5);
- `label_tv` (total variation between the classifier's predicted-label histogram of the samples
  and of the reference) and `label_hist`, for labelled images;
- `sliced_w1` in data space;
- for mixture data, `dlogp`/`dlogp_se` from `oracle_metrics` (the exact density);
- `inception_fd`, `inception_kid`, `inception_kid_se` when asked for (optional extra).

Samples of discrete data (images) are quantised to the data's own bins first (what saving them as PNG does), so
samples and data are compared in the same discrete space.
"""
from __future__ import annotations

from typing import Optional

import torch

import evaluation.metrics as M
from solvers.metrics import component_tv, dlogp, sliced_wasserstein
from training.levels import levels_to_model, model_to_levels
from configs.errors import InputError

Tensor = torch.Tensor


def quantise(x: Tensor, num_levels: int = 256) -> Tensor:
    """Model-space image -> the centre of its bin among the data's `num_levels` levels,
    (2 k + 1)/L - 1 with k = floor((x + 1) L/2) clamped to 0..L-1 (L = 256: the 8-bit bins)."""
    return levels_to_model(model_to_levels(x, num_levels), num_levels)


def oracle_metrics(x: Tensor, ref: Tensor, distribution) -> dict:
    """Metrics that need the exact data density (mixture data): the single place for them.

    dlogp = mean log p(x) - mean log p(ref) under the true mixture p, with its standard error
    (`solvers.metrics.dlogp`): 0 when x ~ p, negative when samples fall where p is small (blur),
    positive when they collapse onto the modes; component_tv = total variation between the
    samples' component frequencies and the mixture weights (`solvers.metrics.component_tv`).
    """
    d = dlogp(x.double(), distribution.log_prob, ref.double())
    return {"dlogp": d.value, "dlogp_se": d.se, "component_tv": component_tv(x.double(), distribution)}


class SampleEvaluator:
    """Metrics of sample sets against `reference` (e.g. the test split), all with the same extractor.

    Args:
        reference:  `[n, *dims]` model-space data (bin centres for 8-bit data).
        extractor:  a `features.FeatureExtractor`.
        num_levels: levels of discrete data (quantise samples to their bins first), None for continuous data.
        distribution: the exact data distribution (mixture data) for `oracle_metrics`, or None.
        inception:  an `inception.InceptionFeatures` or None.
        seed:       seeds the KID subsets and sliced-W1 directions, identical for every call.
    """

    def __init__(self, reference: Tensor, extractor, num_levels: Optional[int], distribution=None,
                 inception=None, seed: int = 0):
        self.reference, self.extractor, self.num_levels = reference, extractor, num_levels
        self.distribution, self.inception, self.seed = distribution, inception, seed
        self.ref_features = extractor.features(reference)
        pred = extractor.predict(reference)
        self.ref_labels = pred
        self.ref_hist = None if pred is None else M.label_histogram(pred, extractor.num_classes).tolist()
        self.ref_inception = None if inception is None else inception(reference)

    def _gen(self, offset: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000 + offset)

    def evaluate(self, x: Tensor) -> dict:
        if x.shape[1:] != self.reference.shape[1:]:
            raise InputError(f"samples of shape {tuple(x.shape[1:])} do not match the reference "
                             f"{tuple(self.reference.shape[1:])}")
        if not torch.isfinite(x).all():
            return {"finite": False}
        if self.num_levels is not None:
            x = quantise(x, self.num_levels)
        f = self.extractor.features(x)
        out = {"finite": True, "fd": M.frechet_distance(self.ref_features, f)}
        out["kid"], out["kid_se"] = M.kernel_inception_distance(self.ref_features, f, generator=self._gen(1))
        out.update(M.precision_recall(self.ref_features, f, k=3))
        out.update(M.density_coverage(self.ref_features, f, k=5))
        pred = self.extractor.predict(x)
        if pred is not None:
            k = self.extractor.num_classes
            out["label_tv"] = M.label_histogram_tv(self.ref_labels, pred, k)
            out["label_hist"] = M.label_histogram(pred, k).tolist()
        out["sliced_w1"] = sliced_wasserstein(x, self.reference, generator=self._gen(2))
        if self.distribution is not None:
            out.update(oracle_metrics(x, self.reference, self.distribution))
        if self.inception is not None:
            fi = self.inception(x)
            out["inception_fd"] = M.frechet_distance(self.ref_inception, fi)
            out["inception_kid"], out["inception_kid_se"] = M.kernel_inception_distance(
                self.ref_inception, fi, generator=self._gen(3))
        return out
