"""score_sde subvp/cifar10_ddpmpp_continuous: DDPM++ (4 res blocks per level), continuous subvp SDE,
CIFAR-10."""
from configs.pretrained.common import score_sde_ddpmpp


def get_config():
    return score_sde_ddpmpp("cifar10_ddpmpp_continuous", "subvp", num_res_blocks=4, parameters=61_804_419)
