"""Print the bin edges of the prompt attributes (`training.prompts.BIN_EDGES`): the tertiles of each
attribute on a data set's train split (`data.split_seed = 0`), rounded to 3 significant digits.

    OMP_NUM_THREADS=1 python tools/prompt_bins.py            # digits and fashion_mnist, seconds
    OMP_NUM_THREADS=1 python tools/prompt_bins.py --joint fashion_mnist size brightness
        # the train images per class and (bin, bin) combination, the share in each bin with the edges of
        # BIN_EDGES, and the correlation of every pair of attributes: the check behind a data set's choice

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
from training.prompts import ATTRIBUTES, CLASS_NAMES, attribute_bins  # noqa: E402


def tertiles(name: str, dataset: str):
    config = get_default_config()
    config.data.dataset = dataset
    if dataset == "fashion_mnist":
        config.data.image_size = 28
    x = get_dataset(config).train
    v = torch.cat([ATTRIBUTES[name].fn(x[i:i + 5000]) for i in range(0, x.shape[0], 5000)]).double()
    q = torch.quantile(v, torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    return tuple(float(f"{e:.3g}") for e in q.tolist())


def joint(dataset: str, a: str, b: str):
    """Print per class the train images in each (bin of a, bin of b), the bin shares and the correlations."""
    config = get_default_config()
    config.data.dataset = dataset
    if dataset == "fashion_mnist":
        config.data.image_size = 28
    ds = get_dataset(config)
    x, y = ds.train, ds.train_labels
    names = list(ATTRIBUTES)
    v = torch.cat([torch.stack([ATTRIBUTES[n].fn(x[i:i + 5000]).double() for n in names], 1)
                   for i in range(0, x.shape[0], 5000)])
    bins = torch.cat([attribute_bins(x[i:i + 5000], dataset, names) for i in range(0, x.shape[0], 5000)])
    for k, n in enumerate(names):
        share = torch.bincount(bins[:, k], minlength=3).double() / x.shape[0]
        print(f"{n}: share per bin {[round(s, 3) for s in share.tolist()]}")
    corr = torch.corrcoef(v.T)
    print("correlation", " ".join(f"{names[i]}-{names[j]} {corr[i, j]:.2f}" for i in range(len(names))
                                  for j in range(i + 1, len(names))))
    ia, ib = names.index(a), names.index(b)
    print(f"train images per class, rows: {a} bins {ATTRIBUTES[a].bins}, columns: {b} bins {ATTRIBUTES[b].bins}")
    for c, cname in enumerate(CLASS_NAMES[dataset]):
        m = y == c
        print(f"  {cname:9s}", torch.bincount(bins[m, ia] * 3 + bins[m, ib], minlength=9).view(3, 3).tolist())


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--joint":
        joint(*sys.argv[2:])
        sys.exit(0)
    for dataset in ("digits", "fashion_mnist"):
        print(f'"{dataset}": {{' + ", ".join(f'"{a}": {tertiles(a, dataset)}' for a in ATTRIBUTES) + "},")
