"""VP SDE on a 2-D toy set (two moons by default; --config.data.dataset=8gaussians,
checkerboard, swissroll or mixture) with the residual MLP."""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.data.dataset = "moons"
    config.data.dim = 2
    config.model.name = "mlp"
    config.model.hidden = 128
    config.model.num_blocks = 3
    config.sde.name = "vpsde"
    config.training.batch_size = 256
    config.training.n_iters = 3000
    config.training.lr = 2e-3
    config.training.snapshot_freq = 1000
    config.sampling.sampler = "euler_maruyama"
    config.sampling.steps = 500
    config.sampling.num_samples = 2000
    config.sampling.denoise = True
    config.eval.trace = "exact"
    config.eval.num_samples = 1000
    config.eval.batch_size = 1000
    return config
