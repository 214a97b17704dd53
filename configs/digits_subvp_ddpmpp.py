"""sub-VP SDE on 8x8 digits with a DDPM++ U-Net; the sub-VP sampler default is the
Euler-Maruyama reverse SDE (sub-VP has no dedicated discrete chain)."""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.sde.name = "subvpsde"
    config.model.name = "ddpmpp"
    config.training.n_iters = 5000
    config.sampling.sampler = "euler_maruyama"
    return config
