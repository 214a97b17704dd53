"""VP SDE on a Gaussian mixture given in the config (its exact score is known:
compare the trained network with models.GaussianMixture)."""
from configs.toy_vp_mlp import get_config as get_vp_config


def get_config():
    config = get_vp_config()
    config.data.dataset = "mixture"
    config.data.dim = 2
    config.data.mixture.weights = (0.3, 0.3, 0.4)
    config.data.mixture.means = ((-2.0, 0.0), (2.0, 0.0), (0.0, 2.5))
    config.data.mixture.stds = (0.3, 0.3, 0.5)
    return config
