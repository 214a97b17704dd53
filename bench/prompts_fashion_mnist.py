"""Benchmark: prompt adherence on 28x28 Fashion-MNIST (docs/bench/prompts-fashion-mnist.md).

Prompts "a {brightness} {size} {class}" (configs/fashion_mnist_prompts_vp_ddpmpp.py); the study
(methods, metrics, floors) is bench/prompts_study.py (settings: `STUDIES["fashion_mnist"]`); the judge
is the shared FeatureNet classifier of evaluation/features.py trained for 8 epochs (cached).

    python bench/prompts_fashion_mnist.py --prompts runs/fm_prompts --cond runs/fm_cond
    -> bench/results/prompts_fashion_mnist.json (resumable), prompts_fashion_mnist.png,
       prompts_fashion_mnist_grids.png, prompts_fashion_mnist_prompt_grid.png
    python bench/prompts_fashion_mnist.py --table       # the docs' tables
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.prompts_study import main  # noqa: E402

if __name__ == "__main__":
    main("fashion_mnist")
