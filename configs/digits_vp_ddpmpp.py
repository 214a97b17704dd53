"""VP SDE (linear beta 0.1..20) on 8x8 digits with a DDPM++ U-Net (sinusoidal t embedding).

Same network as the demo, trained longer."""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.sde.name = "vpsde"
    config.model.name = "ddpmpp"
    config.training.n_iters = 5000
    return config
