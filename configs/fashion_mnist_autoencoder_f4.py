"""KL autoencoder with f = 4 (28x28 -> 8x7x7) of Fashion-MNIST; see configs/fashion_mnist_autoencoder.py."""
from configs.fashion_mnist_autoencoder import get_config as _base


def get_config():
    config = _base()
    config.autoencoder.f = 4
    config.autoencoder.latent_channels = 8
    return config
