"""score_sde vp/cifar10_ddpmpp_deep_continuous: DDPM++ deep (8 res blocks per level), continuous vp
SDE, CIFAR-10."""
from configs.pretrained.common import score_sde_ddpmpp


def get_config():
    return score_sde_ddpmpp("cifar10_ddpmpp_deep_continuous", "vp", num_res_blocks=8, parameters=106_632_579)
