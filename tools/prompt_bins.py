"""Print the bin edges of the prompt attributes (`training.prompts.BIN_EDGES`): the tertiles of each
attribute on a data set's train split (`data.split_seed = 0`), rounded to 3 significant digits.

    OMP_NUM_THREADS=1 python tools/prompt_bins.py            # digits and fashion_mnist, seconds

Not run in CI. The edges are written into `training/prompts.py` by hand; `tests/test_prompts.py`
checks that each bin of each attribute holds about a third of the digits train split.
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from configs.default import get_default_config  # noqa: E402
from training.data import get_dataset  # noqa: E402
from training.prompts import ATTRIBUTES  # noqa: E402


def tertiles(name: str, dataset: str):
    config = get_default_config()
    config.data.dataset = dataset
    if dataset == "fashion_mnist":
        config.data.image_size = 28
    x = get_dataset(config).train
    v = torch.cat([ATTRIBUTES[name].fn(x[i:i + 5000]) for i in range(0, x.shape[0], 5000)]).double()
    q = torch.quantile(v, torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    return tuple(float(f"{e:.3g}") for e in q.tolist())


if __name__ == "__main__":
    for dataset in ("digits", "fashion_mnist"):
        print(f'"{dataset}": {{' + ", ".join(f'"{a}": {tertiles(a, dataset)}' for a in ATTRIBUTES) + "},")
