"""`--mode train`: train or resume; saves the config, periodic sample grids and a loss plot."""
from __future__ import annotations

import os

from training import train
from training.data import get_dataset, model_to_uint8
from training.workdir import WorkdirLock

from .common import setup
from .figures import save_image_grid, save_loss_plot, save_scatter
from .latent import is_latent, latent_run_data, save_latent_file
from .rundir import save_config


def run_train(config, workdir, resume_from=None):
    device, here = setup(config)
    # bad data settings fail before the workdir exists; a latent run trains on scaled latents
    dataset = latent_run_data(config, workdir) if is_latent(config) else get_dataset(config)
    if here.is_main:
        os.makedirs(workdir, exist_ok=True)
        lock = WorkdirLock(workdir).acquire()    # held through train(), which re-enters it
    try:
        if here.is_main:
            save_config(config, workdir)
            if is_latent(config):
                save_latent_file(dataset, workdir)       # the estimated scale factor, saved with the run
        grids = os.path.join(workdir, "train_samples")

        def on_samples(step, x):
            os.makedirs(grids, exist_ok=True)
            path = os.path.join(grids, f"step{step:09d}.png")
            if x.dim() == 4:
                save_image_grid(model_to_uint8(dataset.codec.decode(x) if is_latent(config) else x), path)
            elif x.shape[1] >= 2:
                save_scatter(x.numpy(), dataset.test[:5000].numpy(), path)

        state = train(config, workdir, dataset=dataset, on_samples=on_samples, resume_from=resume_from,
                      adapt_threads=config.training.num_threads == -1)
    finally:
        if here.is_main:
            lock.release()
    if not here.is_main:
        return state
    metrics = os.path.join(workdir, "metrics.jsonl")
    plot = os.path.join(workdir, "loss.png")
    save_loss_plot(metrics, plot)
    print(f"trained to step {state.step}; checkpoint: {state.checkpoint}; metrics: {metrics}; loss plot: {plot}")
    return state
