"""Benchmark: hot against cold diffusion on 8x8 digits at equal training wall time (Bansal et al.
2022); the study is `bench/cold_study.py` (settings: `STUDIES["digits"]` in `bench/cold_study_train.py`).

    python bench/cold_digits.py --part cost    # seconds per step of each model, alternating -> steps
    python bench/cold_digits.py --part train   # runs/cold_digits/{hot,blur,blur_full,mask,pixelate,snow}
    python bench/cold_digits.py --part eval    # bench/results/cold_digits.json, .md, *_grids.png, *_samples.png
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.cold_study import main  # noqa: E402

if __name__ == "__main__":
    main("digits")
