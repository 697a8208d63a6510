"""Analysis of studies read back from MLflow (never from Ray's folders, never training).

* :mod:`analysis.runs`       studies -> tidy run table (one row per child run)
* :mod:`analysis.baselines`  the ``baseline/<method>_<split>_<metric>`` metrics of a study's parent run
* :mod:`analysis.importance` hyperparameter importance per objective (Optuna fANOVA on the study's storage)
* :mod:`analysis.figures`    drawing only: the PNG figures
* :mod:`analysis.page`       drawing only: report.html (plotly, plotly.min.js once per report folder)
* :mod:`analysis.terminal`   the compact table ``analysis.report`` prints, and trials.csv
* :mod:`analysis.report`     CLI ``python -m analysis.report --study NAME``
* :mod:`analysis.tables`     the papers' Table I (mean ± std over seeds) of a replication,
                             CLI ``python -m analysis.tables --replication NAME`` (the runs
                             come from ``python -m study.replicate --run RUN_ID --seeds 10``)

The Pareto and hypervolume arithmetic is :mod:`study.pareto` (the study uses it while it runs).
"""
