"""VP SDE on the latents of configs/digits_autoencoder.py (trained into runs/digits_autoencoder):
the score network sees 2x4x4 scaled latents (data.image_size / num_channels are the latent shape);
samples are decoded to the digits' 17 levels. docs/guide/latent.md."""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.data.autoencoder = "runs/digits_autoencoder"
    config.data.image_size = 4
    config.data.num_channels = 2
    config.model.name = "ddpmpp"
    config.model.ch_mult = (1, 2)
    config.model.attn_resolutions = (2,)
    config.training.n_iters = 5000
    return config
