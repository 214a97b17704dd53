"""The modes behind `run.py`: one module each (train, sample, evaluate, compare, importer), plus
config loading (`config_io`), shared helpers (`common`) and figures. Imports training, solvers, models.

`load_run(workdir)` (runner/loaded.py) gives a run directory's config, SDE, model and score function.
"""
from .loaded import LoadedRun, load_run

__all__ = ["LoadedRun", "load_run"]
