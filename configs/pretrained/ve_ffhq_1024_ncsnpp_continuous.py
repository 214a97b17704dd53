"""score_sde ve/ffhq_1024_ncsnpp_continuous: NCSN++ (nf 16, 8 levels) with output-skip and input-skip
pyramids, VE SDE, FFHQ 1024x1024 (reference config configs/ve/ffhq_ncsnpp_continuous.py)."""
from configs.pretrained.common import score_sde_ncsnpp


def get_config():
    return score_sde_ncsnpp("ffhq_1024_ncsnpp_continuous", image_size=1024, sigma_max=1348, N=2000, nf=16,
                            ch_mult=(1, 2, 4, 8, 16, 32, 32, 32), num_res_blocks=1, dropout=0.0,
                            progressive="output_skip", progressive_input="input_skip", parameters=105_785_896)
