"""diffusers google/ddpm-cifar10-32: DDPM (Ho et al. 2020) on CIFAR-10, UNet2DModel."""
from configs.pretrained.common import diffusers_ddpm


def get_config():
    return diffusers_ddpm("google/ddpm-cifar10-32", image_size=32, ch_mult=(1, 2, 2, 2), dropout=0.1,
                          parameters=35_746_307)
