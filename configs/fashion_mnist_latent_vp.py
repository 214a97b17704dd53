"""VP SDE on the latents of configs/fashion_mnist_autoencoder.py (trained into
runs/fashion_mnist_autoencoder): a DDPM++ U-Net on 4x14x14 scaled latents; samples decoded to 8-bit.
For the f = 4 autoencoder: --config.data.autoencoder=<its run> --config.data.image_size=7
--config.data.num_channels=8 "--config.model.ch_mult=(1,)". docs/guide/latent.md."""
from configs.fashion_mnist_vp_ddpmpp import get_config as _pixel


def get_config():
    config = _pixel()
    config.data.autoencoder = "runs/fashion_mnist_autoencoder"
    config.data.image_size = 14
    config.data.num_channels = 4
    config.model.ch_mult = (1, 2)
    config.model.attn_resolutions = (7,)
    return config
