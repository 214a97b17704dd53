"""Benchmark: hot against cold diffusion on 28x28 Fashion-MNIST at equal training wall time (Bansal et al.
2022); the study is `bench/cold_study.py` (settings: `STUDIES["fashion_mnist"]` in `bench/cold_study_train.py`).

    python bench/cold_fashion_mnist.py --part cost    # seconds per step of each model, alternating -> steps
    python bench/cold_fashion_mnist.py --part train   # runs/cold_fashion_mnist/{hot,blur}
    python bench/cold_fashion_mnist.py --part eval    # bench/results/cold_fashion_mnist.json, .md, *_grids.png, *_samples.png
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.cold_study import main  # noqa: E402

if __name__ == "__main__":
    main("fashion_mnist")
