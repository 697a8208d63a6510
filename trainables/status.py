"""How a trial (a training run) ended: the one definition of the status strings.

``TrialStatus`` is a ``StrEnum``: a member *is* its string (``TrialStatus.COMPLETE == "complete"``,
formats and JSON-encodes as ``complete``), so what is stored (MLflow tag ``trial.status``, Optuna
user attr ``status``, Tune reports, ``runs.json``) is the same text as before it existed, and a
value read back from a store compares equal to the member.

Who uses which:

* ``trainables.loop.TrainResult.status``: ``complete`` | ``diverged`` | ``stopped``.
* the study (``study.objectives.classify``, MLflow tag ``trial.status``): ``running`` while it
  trains, then one of :data:`ENDINGS`; ``interrupted`` after Ctrl-C. A ``stopped`` run is
  recorded as ``pruned``.
* replication and the quality benchmark: ``running``, ``complete``, ``diverged``, ``failed``.

Imports nothing (the analysis reads it without torch).
"""
from __future__ import annotations

from enum import StrEnum


class TrialStatus(StrEnum):
    COMPLETE = "complete"        # trained to its last epoch
    PRUNED = "pruned"            # stopped early by the study's scheduler or a stopper
    DIVERGED = "diverged"        # a non-finite loss term or gradient norm ended it
    FAILED = "failed"            # raised, or (study) ended without finite objectives
    RUNNING = "running"          # MLflow: the run is open
    INTERRUPTED = "interrupted"  # MLflow: the study was stopped (Ctrl-C) while it ran
    STOPPED = "stopped"          # the loop only: its caller asked it to stop (the study says pruned)


# The ends a study counts, in the order it reports them (counts, parent metrics, analysis).
ENDINGS = (TrialStatus.COMPLETE, TrialStatus.PRUNED, TrialStatus.DIVERGED, TrialStatus.FAILED)
