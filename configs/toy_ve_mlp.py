"""VE SDE on a 2-D toy set with the residual MLP (labels log sigma, output / sigma).
sigma_max = 5 covers the toy sets' diameter (about 5)."""
from configs.toy_vp_mlp import get_config as get_vp_config


def get_config():
    config = get_vp_config()
    config.sde.name = "vesde"
    config.sde.sigma_min = 0.01
    config.sde.sigma_max = 5.0
    return config
