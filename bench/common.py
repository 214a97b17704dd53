"""Small helpers shared by the bench scripts: mean and standard error over runs, and results JSON read
whole and written atomically (a temporary file renamed into place)."""
from __future__ import annotations

import json
import math
import os


def mean_se(values):
    """(mean, standard error of the mean) of a sequence of numbers; the SE is nan for fewer than 2."""
    v = [float(x) for x in values]
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))


def load(path):
    """The results dict at `path`, or {} if there is none yet (resumable studies)."""
    return json.load(open(path)) if os.path.exists(path) else {}


def save(path, res):
    """Write `res` to `path` atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, path)
