"""archbench's harness: CLI, configs, trainer, evaluation, sweeps, results store, ranking.

This is the only package that imports all the others and the only one that touches the
results database.
"""

__version__ = "0.1.0"
