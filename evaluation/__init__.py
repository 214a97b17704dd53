"""Sample-quality evaluation: metrics between feature sets, the data set's own feature network,
optional Inception features, and `SampleEvaluator` which ties them together.

Imports training (data sets, levels) and solvers (sliced W1); imported by runner.
"""
from .features import FeatureExtractor, FeatureNet, FeatureSettings, get_feature_extractor
from .metrics import (METRICS, Metric, density_coverage, frechet_distance, kernel_inception_distance, label_histogram,
                      label_histogram_tv, precision_recall)
from .suite import SampleEvaluator, oracle_metrics, quantise

__all__ = ["FeatureExtractor", "FeatureNet", "FeatureSettings", "get_feature_extractor",
           "frechet_distance", "kernel_inception_distance", "precision_recall", "density_coverage",
           "label_histogram", "label_histogram_tv", "SampleEvaluator", "oracle_metrics", "quantise",
           "METRICS", "Metric"]
