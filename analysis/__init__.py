"""Analysis of studies read back from MLflow (never from Ray's folders).

* :mod:`analysis.pareto`     Pareto front, exact hypervolume and its history (pure numpy)
* :mod:`analysis.runs`       studies -> tidy run table (one row per child run)
* :mod:`analysis.importance` hyperparameter importance per objective (Optuna fANOVA)
* :mod:`analysis.figures`    drawing only: PNG figures and one self-contained plotly page
* :mod:`analysis.report`     CLI ``python -m analysis.report --study NAME``
* :mod:`analysis.tables`     the papers' Table I (mean ± std over seeds) of a replication,
                             CLI ``python -m analysis.tables --replication NAME`` (the runs
                             come from ``python -m study.replicate --run RUN_ID --seeds 10``)
"""
from analysis.pareto import hypervolume, hypervolume_history, pareto_front, reference_point

__all__ = ["pareto_front", "hypervolume", "hypervolume_history", "reference_point"]
