"""VP SDE on Fashion-MNIST (28x28, from the Debian package dataset-fashion-mnist's idx
files in /usr/share/datasets/fashion-mnist, or config.data.path) with a DDPM++ U-Net.
28 halves twice (28 -> 14 -> 7), so three resolution levels; attention at 7x7."""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.data.dataset = "fashion_mnist"
    config.data.image_size = 28
    config.data.num_channels = 1
    config.model.name = "ddpmpp"
    config.model.nf = 64
    config.model.ch_mult = (1, 2, 2)
    config.model.num_res_blocks = 2
    config.model.attn_resolutions = (7,)
    config.model.dropout = 0.1
    config.training.batch_size = 128
    config.training.lr = 2e-4
    config.training.warmup = 1000
    config.training.n_iters = 50000
    config.training.snapshot_freq = 2000
    config.eval.batch_size = 100
    config.eval.num_samples = 1000
    return config
