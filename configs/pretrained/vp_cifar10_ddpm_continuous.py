"""score_sde vp/cifar10_ddpm_continuous: DDPM's network (Ho et al. 2020), continuous vp SDE, CIFAR-10."""
from configs.pretrained.common import score_sde_ddpm


def get_config():
    return score_sde_ddpm("cifar10_ddpm_continuous", "vp", parameters=35_218_947)
