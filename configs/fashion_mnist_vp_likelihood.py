"""A short CPU run on Fashion-MNIST (28x28, 8-bit; the Debian package dataset-fashion-mnist or
config.data.path) with likelihood training: g(t)^2 weighting, t ∝ g^2/s^2, dequantised data.
A small DDPM++ U-Net (channels 32, multipliers (1, 2, 2): 28 -> 14 -> 7, attention at 7x7).
Evaluates 100 test images with 2 dequantisation draws. Measured with 1 torch thread on a busy
2-core machine: training 552 s, eval 264 s (docs/bench/likelihood.md: bits/dim beside the baselines).

    python run.py --config configs/fashion_mnist_vp_likelihood.py --workdir runs/fmnist_lik --mode all
"""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.data.dataset = "fashion_mnist"
    config.data.image_size = 28
    config.data.num_channels = 1
    config.model.nf = 32
    config.model.ch_mult = (1, 2, 2)
    config.model.num_res_blocks = 1
    config.model.attn_resolutions = (7,)
    config.training.likelihood_weighting = True
    config.training.importance_sampling = True
    config.training.n_iters = 1000
    config.training.snapshot_freq = 500
    config.eval.num_samples = 100
    config.eval.batch_size = 100
    config.eval.repeats = 2
    return config
