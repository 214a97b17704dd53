"""diffusers google/ddpm-bedroom-256 (and google/ddpm-ema-bedroom-256, same layout): DDPM (Ho et al.
2020), 256x256, UNet2DModel."""
from configs.pretrained.common import diffusers_ddpm


def get_config():
    return diffusers_ddpm("google/ddpm-bedroom-256", image_size=256, ch_mult=(1, 1, 2, 2, 4, 4), dropout=0.0,
                          parameters=113_673_219)
