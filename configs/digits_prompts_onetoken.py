"""The prompt-conditional digits net on one-token prompts: the prompt is the class name ("seven"), so
cross-attention over one token adds a per-class vector at every position (a class embedding in
behaviour; tests/test_text_conditioning.py). bench/prompts_digits.py compares its samples at CFG
w = 0 with the class-conditional net's on the same seeds.

    python run.py --config configs/digits_prompts_onetoken.py --workdir runs/onetoken --mode train
"""
from configs.digits_prompts_vp_ddpmpp import get_config as get_prompts_config


def get_config():
    config = get_prompts_config()
    config.prompts.attributes = ()
    config.prompts.templates = ("{class}",)
    config.prompts.held_out = ()
    return config
