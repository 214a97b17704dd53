"""ml_collections configs: `default.py` plus one file per experiment. Pure data."""
