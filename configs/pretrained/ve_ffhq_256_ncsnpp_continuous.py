"""score_sde ve/ffhq_256_ncsnpp_continuous: NCSN++ with output-skip and input-skip pyramids, VE SDE,
FFHQ 256x256."""
from configs.pretrained.common import score_sde_ncsnpp


def get_config():
    return score_sde_ncsnpp("ffhq_256_ncsnpp_continuous", image_size=256, sigma_max=348, N=2000,
                            ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, dropout=0.0,
                            progressive="output_skip", progressive_input="input_skip", parameters=65_574_549)
