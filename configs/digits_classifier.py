"""A digits classifier of clean images: the independent judge of class-conditional samples.
Separately seeded from the guidance classifier, never noise-conditional, never used
for guidance; it writes to workdir/judge/ so it can share the class-conditional run's workdir:

    python run.py --config configs/digits_classifier.py --workdir runs/cond --mode train_classifier

For a noise-conditional guidance classifier instead, set classifier.noise_conditional=True
(configs/digits_cond_vp_ddpmpp.py does).
"""
from configs.digits_cond_vp_ddpmpp import get_config as get_cond_config


def get_config():
    config = get_cond_config()
    config.classifier.noise_conditional = False
    config.classifier.dir = "judge"
    config.classifier.seed = 20
    config.classifier.n_iters = 1500
    return config
