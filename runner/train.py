"""`--mode train`: train or resume."""
from __future__ import annotations

import os


def run_train(config, workdir):
    from training import train
    state = train(config, workdir)
    print(f"trained to step {state.step}; checkpoint: {state.checkpoint}; "
          f"metrics: {os.path.join(workdir, 'metrics.jsonl')}")
    return state
