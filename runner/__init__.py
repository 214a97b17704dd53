"""The modes behind `run.py`: one module each (train, sample, evaluate, compare), plus config
loading (`config_io`), shared helpers (`common`) and figures. Imports training, solvers, models."""
