"""Likelihood training on the 8x8 digits (Song, Durkan, Murray & Ermon 2021): the demo's VP SDE and
DDPM++ network, trained with the likelihood weighting g(t)^2 and t drawn ∝ g^2/s^2 (importance
sampling, loss reweighted), on uniformly dequantised data (17 levels). Sized for a CPU:
3,000 steps, batch 64 (README: time and bits/dim beside the baselines).

    python run.py --config configs/digits_vp_likelihood.py --workdir runs/digits_lik --mode all
"""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.training.likelihood_weighting = True
    config.training.importance_sampling = True
    config.training.n_iters = 3000
    config.training.snapshot_freq = 1000
    return config
