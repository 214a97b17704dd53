"""Benchmark: prompt adherence on 8x8 digits, measured on the samples (docs/bench/prompts-digits.md).

Prompts "a {thickness} {class} {slant}"; the study (methods, metrics, floors) is bench/prompts_study.py
(settings: `STUDIES["digits"]`), the judge the clean-data digits classifier trained in the
class-conditional run (configs/digits_classifier.py).

    python bench/prompts_digits.py --prompts runs/prompts --cond runs/cond --onetoken runs/onetoken
    -> bench/results/prompts_digits.json (resumable: finished rows are kept), prompts_digits.png,
       prompts_digits_grids.png, prompts_digits_prompt_grid.png (one row of samples per prompt)
    python bench/prompts_digits.py --grids ...   # draw the finished rows' samples again for the figures
    python bench/prompts_digits.py --table       # the docs' tables
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.prompts_study import main  # noqa: E402

if __name__ == "__main__":
    main("digits")
