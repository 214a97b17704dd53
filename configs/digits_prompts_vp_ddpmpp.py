"""Prompt-conditional VP DDPM++ on 8x8 digits (docs/guide/prompts.md): the class-conditional digits
net with its label embedding replaced by a text encoder and cross-attention at 8x8 and 4x4 (and the
middle). Prompts name the class, the stroke thickness and the slant ("a thick seven leaning right");
prompt dropout 0.2 trains the empty prompt for classifier-free guidance. Three class-attribute
combinations are held out of training (and of the contrastive model's).

    python run.py --config configs/digits_prompts_vp_ddpmpp.py --workdir runs/prompts --mode train
    python run.py --config configs/digits_prompts_vp_ddpmpp.py --workdir runs/prompts --mode sample \\
        --config.sampling.prompt="a thick seven leaning right" --config.sampling.guidance=cfg \\
        --config.sampling.guidance_scale=3
    python run.py --workdir runs/prompts --mode train_contrastive      # CLIP-style guidance's model
"""
from configs.digits_cond_vp_ddpmpp import get_config as get_cond_config


def get_config():
    config = get_cond_config()
    config.model.num_classes = 0
    config.model.text_vocab_size = 48
    config.model.cross_attn_resolutions = (8, 4)
    config.model.text.update(dim=64, depth=2, heads=4, max_len=8, cross_attn_heads=1)
    config.training.label_dropout = 0.2          # P(prompt -> empty prompt)
    config.sampling.class_label = "none"
    config.sampling.num_samples = 64
    config.prompts.held_out = ("seven:thick", "three:thin", "four:right")
    return config
