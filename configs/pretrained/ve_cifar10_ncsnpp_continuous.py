"""score_sde ve/cifar10_ncsnpp_continuous: NCSN++ (4 res blocks per level), VE SDE, CIFAR-10."""
from configs.pretrained.common import score_sde_ncsnpp


def get_config():
    return score_sde_ncsnpp("cifar10_ncsnpp_continuous", image_size=32, sigma_max=50, N=1000,
                            num_res_blocks=4, parameters=62_758_915)
