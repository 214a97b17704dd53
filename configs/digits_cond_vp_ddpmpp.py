"""Class-conditional VP DDPM++ on 8x8 digits: a label embedding added to the noise
embedding, label dropout 0.2 so the same net also learns the unconditional (null-label) score
for classifier-free guidance. The classifier block is the noise-conditional digits classifier
that classifier and universal guidance use (`--mode train_classifier` in the same workdir).

    python run.py --config configs/digits_cond_vp_ddpmpp.py --workdir runs/cond --mode train
    python run.py --config configs/digits_cond_vp_ddpmpp.py --workdir runs/cond --mode train_classifier
    python run.py --config configs/digits_cond_vp_ddpmpp.py --workdir runs/cond --mode sample \\
        --config.sampling.class_label=all --config.sampling.guidance=cfg --config.sampling.guidance_scale=1
"""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.model.num_classes = 10
    config.training.label_dropout = 0.2
    config.training.n_iters = 3000
    config.sampling.sampler = "ddim"
    config.sampling.steps = 100
    config.sampling.class_label = "all"
    config.sampling.samples_per_class = 10
    config.classifier.noise_conditional = True
    config.classifier.n_iters = 2000
    return config
