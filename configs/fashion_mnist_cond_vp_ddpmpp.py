"""Class-conditional VP DDPM++ on 28x28 Fashion-MNIST, small enough for a CPU study: nf 32, ch_mult
(1, 2, 2), one residual block per level, self-attention at 7x7, batch 32; a label embedding added to
the noise embedding, label dropout 0.2 (the null label for classifier-free guidance). The class-only
reference of the prompt study (bench/prompts_fashion_mnist.py, docs/bench/prompts-fashion-mnist.md).

    python run.py --config configs/fashion_mnist_cond_vp_ddpmpp.py --workdir runs/fm_cond --mode train
"""
from configs.fashion_mnist_vp_ddpmpp import get_config as get_fashion_config


def get_config():
    config = get_fashion_config()
    config.model.nf = 32
    config.model.ch_mult = (1, 2, 2)
    config.model.num_res_blocks = 1
    config.model.attn_resolutions = (7,)
    config.model.dropout = 0.0
    config.model.num_classes = 10
    config.training.label_dropout = 0.2
    config.training.batch_size = 32
    config.training.lr = 1e-3
    config.training.warmup = 100
    config.training.n_iters = 700
    config.training.snapshot_freq = 100
    config.sampling.sampler = "ddim"
    config.sampling.steps = 50
    config.sampling.class_label = "all"
    config.sampling.samples_per_class = 10
    return config
