"""Prompt-conditional VP DDPM++ on 28x28 Fashion-MNIST: the class-conditional net of
configs/fashion_mnist_cond_vp_ddpmpp.py with its label embedding replaced by a text encoder and
cross-attention at 7x7 (and the middle). Prompts name the class, the size and the brightness
("a bright large coat"): size (radius of gyration of the garment) and brightness (mean intensity
of its pixels) vary within most classes and are nearly uncorrelated on the train split (r = -0.08);
slant is not used (on clothes it mostly says "footwear": boots, sneakers and sandals lean right).
Prompt dropout 0.2 trains the empty prompt for classifier-free guidance. Three class-attribute
combinations are held out of training (and of the contrastive model's).

    python run.py --config configs/fashion_mnist_prompts_vp_ddpmpp.py --workdir runs/fm_prompts --mode train
    python run.py --workdir runs/fm_prompts --mode train_contrastive      # CLIP-style guidance's model
    python run.py --workdir runs/fm_prompts --mode sample --config.sampling.prompt="a bright large coat" \\
        --config.sampling.guidance=cfg --config.sampling.guidance_scale=1
"""
from configs.fashion_mnist_cond_vp_ddpmpp import get_config as get_cond_config


def get_config():
    config = get_cond_config()
    config.model.num_classes = 0
    config.model.text_vocab_size = 48
    config.model.cross_attn_resolutions = (7,)
    config.model.text.update(dim=64, depth=1, heads=4, max_len=8, cross_attn_heads=1)
    config.sampling.class_label = "none"
    config.sampling.num_samples = 64
    config.prompts.attributes = ("size", "brightness")
    config.prompts.templates = ("a {brightness} {size} {class}", "{size} {brightness} {class}",
                                "a {class} that is {size} and {brightness}", "{class} {brightness} and {size}",
                                "a {class}")
    config.prompts.held_out = ("coat:faint", "bag:small", "dress:bright")
    # the contrastive model (--mode train_contrastive): image encoder over 28 -> 14 -> 7
    config.contrastive.ch_mult = (1, 2, 2)
    config.contrastive.text_depth = 1
    config.contrastive.batch_size = 64
    config.contrastive.n_iters = 600
    return config
