"""Library noise goes to the study's log file, not to the terminal.

Ray ("Started a local Ray instance", Tune's ``Tuner.restore(...)`` hint after Ctrl-C, which
contradicts our ``--resume``), Optuna ("A new study created in RDB"), MLflow and Alembic
(database migrations), and Python warnings raised inside them are written to
``<study folder>/study.log`` for the time of the study (:func:`library_logs_to`). The
study's own lines (``[study] ...``: the ``study.terminal`` logger, which does not propagate;
the progress bar; the summary, printed) stay on the terminal and out of this file. Errors
are never hidden: a failed study says so on stderr and names this file.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
from pathlib import Path
from typing import Iterator

LIBRARIES = ("ray", "optuna", "mlflow", "alembic", "py.warnings", "filelock", "urllib3", "git")


def quiet_ray_env() -> None:
    """Environment Ray reads at start: no boxed tables, no checkpoint-frequency nagging."""
    # Checkpointing every epoch of short trials trips Ray's "snapshot too often" warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's boxed tables and TensorBoard hints: the study prints its own progress.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A diverged trial's last report has no val/ metrics; schedulers skip such results.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@contextlib.contextmanager
def library_logs_to(path: Path) -> Iterator[Path]:
    """Route the libraries' loggers and warnings to ``path`` (appended) while the block runs."""
    # Imported first: MLflow and Ray attach their own handlers when imported, which would
    # otherwise come back after the routing below.
    for library in ("mlflow", "ray"):
        importlib.import_module(library)
    import optuna

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = {}
    for name in LIBRARIES:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.propagate, lg.level)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.addHandler(handler)
        lg.propagate = False
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    # Optuna's own switch (its handler was also taken off with the "optuna" logger's handlers
    # above, and comes back with them below: no need to ask Optuna whether it was on)
    optuna.logging.disable_default_handler()
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield path
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate, level) in saved.items():
            lg = logging.getLogger(name)
            lg.removeHandler(handler)
            for h in handlers:
                lg.addHandler(h)
            lg.propagate, lg.level = propagate, level
        handler.close()
