"""KL autoencoder (f = 2, 4 latent channels: 28x28 -> 4x14x14) of Fashion-MNIST, for latent runs
(configs/fashion_mnist_latent_vp.py). `--mode train_autoencoder`; docs/guide/latent.md."""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.data.dataset = "fashion_mnist"
    config.data.image_size = 28
    config.data.num_channels = 1
    config.autoencoder.f = 2
    config.autoencoder.latent_channels = 4
    config.autoencoder.nf = 32
    config.training.batch_size = 128
    config.training.n_iters = 5000
    config.training.lr = 1e-3
    config.training.eval_freq = 1000
    config.training.num_threads = 0
    return config
