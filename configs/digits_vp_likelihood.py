"""Likelihood training on the 8x8 digits (Song, Durkan, Murray & Ermon 2021): the demo's VP SDE and
DDPM++ network, trained with the likelihood weighting g(t)^2 and t drawn ∝ g^2/s^2 (importance
sampling, loss reweighted), on uniformly dequantised data (17 levels). Sized for a CPU:
8,000 steps, batch 64: 985 s with 1 torch thread on a busy 2-core machine
(docs/bench/likelihood.md: time and bits/dim beside the baselines).

    python run.py --config configs/digits_vp_likelihood.py --workdir runs/digits_lik --mode all
"""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.training.likelihood_weighting = True
    config.training.importance_sampling = True
    config.training.n_iters = 8000
    config.training.snapshot_freq = 2000
    return config
