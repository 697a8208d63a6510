"""Every reach into a library's private internals, in one place, checked by tests/test_compat.py.

The study uses public Ray and Optuna APIs wherever they exist (``Trial.num_failures``,
``TrialScheduler.set_search_properties``, ``optuna.logging.disable_default_handler``; the
BatchNorm layers of ``trainables.models.base`` are torch's public classes). What is left has no
public form, and lives here: each reach is one small function, or for the state that
``study.searcher.StudySearcher`` inherits from Ray's ``OptunaSearch``, one named list
(:data:`RAY_INTERNALS`). tests/test_compat.py checks each against the installed Ray and Optuna,
so that an upgrade that moves one fails that test with a message naming it, not a study mid-run.

Nothing is imported here at module level: the callers import Ray and Optuna themselves.
"""
from __future__ import annotations

# The private attributes and method of Ray's OptunaSearch that study.searcher.StudySearcher (its
# subclass) reads, writes or calls, and why. The subclass tells Optuna itself
# (by trial status), survives pickling and adopts orphaned trials, so it works on that state.
RAY_INTERNALS: dict[str, str] = {
    "_ot_study": "the optuna.Study asked and told; reconnected lazily after unpickling",
    "_ot_trials": "Ray trial id -> live optuna.Trial; rebuilt after unpickling and on restore",
    "_completed_trials": "Ray trial ids already told to Optuna; saved and restored as JSON",
    "_space": "the define-by-run function, run on each asked trial",
    "_storage": "the Optuna storage given to OptunaSearch; dropped when pickling",
    "_sampler": "the sampler given to OptunaSearch; dropped when pickling",
    "_suggest_from_define_by_run_func": "runs the define-by-run space on a trial -> its config",
}

# The attributes in RAY_INTERNALS that hold a connection or live objects, not plain data.
OPTUNA_SEARCH_CONNECTIONS = ("_ot_study", "_storage", "_sampler", "_ot_trials")


def without_connections(state: dict) -> dict:
    """``state`` (an OptunaSearch's ``__dict__`` copy) with Ray's private ``_ot_study``,
    ``_storage``, ``_sampler`` and ``_ot_trials`` set to None: a pickled searcher keeps the
    storage URL, never a database connection (Ray pickles the searcher into its experiment
    state, and a Tuner.restore reconnects)."""
    for name in OPTUNA_SEARCH_CONNECTIONS:
        state[name] = None
    return state


def suggest_define_by_run(searcher, ot_trial) -> dict:
    """The config Ray's OptunaSearch draws for ``ot_trial``: its private
    ``_suggest_from_define_by_run_func`` run on its private ``_space``. The subclass asks the
    Optuna trial itself (it may adopt an orphaned one), then has Ray turn it into a config the
    way Ray's own ``suggest`` does."""
    return searcher._suggest_from_define_by_run_func(searcher._space, ot_trial)


def optuna_trial_id(trial) -> int:
    """The storage's id of an Optuna trial (``optuna.Trial`` or ``FrozenTrial``): their
    private ``_trial_id``. Optuna exposes only the per-study ``number``; the storage's public
    ``get_trial_id_from_study_id_trial_number`` would cost a database query per trial where the
    id is already in hand. The id is what the storage's per-trial calls take and what the
    searcher's saved state records."""
    return trial._trial_id


def live_trial(study, trial_id: int):
    """An ``optuna.Trial`` for an existing, unfinished trial of ``study``: Optuna's
    ``Trial(study, trial_id)`` constructor, which its documentation advises against using
    directly (``Study.ask`` only makes new trials). The searcher needs it to go on with a
    trial it owned before a restore, and to adopt a trial left running by a dead driver."""
    import optuna

    return optuna.Trial(study, trial_id)
