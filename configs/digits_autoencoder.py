"""KL autoencoder (f = 2, 2 latent channels: 8x8 -> 2x4x4) of the 8x8 digits, for latent runs
(configs/digits_latent_vp.py). `--mode train_autoencoder`; docs/guide/latent.md."""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.autoencoder.f = 2
    config.autoencoder.latent_channels = 2
    config.autoencoder.nf = 32
    config.training.n_iters = 2000
    config.training.lr = 1e-3
    config.training.eval_freq = 500
    return config
