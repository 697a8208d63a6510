"""OptunaSearch, fixed for multi-objective studies that are pruned, diverge and resume.

Ray's OptunaSearch tells Optuna the last reported values as COMPLETE, so a trial the
scheduler stopped early lands on the Pareto front with low-fidelity values. This
subclass tells each trial by its status (study.objectives.classify): complete ->
COMPLETE with the objectives, pruned -> PRUNED, diverged/failed -> FAIL with user attrs
``status`` and ``reason``; a complete trial without finite objectives -> FAIL with
``status=failed`` and the reason (the status always agrees with the Optuna state).

It also survives pickling (Tuner.restore) by keeping only the storage URL and the
mapping Ray trial id -> Optuna trial id, and reconnecting lazily; and on resume it
*adopts* Optuna trials left RUNNING by a driver that died before Ray checkpointed the
trial that owned them, so that the study ends with exactly the requested number of
trials (Optuna cannot delete a trial).
"""
from __future__ import annotations

import logging
import json
from typing import Optional

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from study.compat import live_trial, optuna_trial_id, suggest_define_by_run, without_connections
from study.objectives import Objective, settle
from study.tags import RAY_ID_ATTR, REASON_ATTR, STATUS_ATTR
from trainables.status import TrialStatus

log = logging.getLogger(__name__)

# What this class relies on inside Ray's OptunaSearch and Optuna is private: it is named in
# study.compat (RAY_INTERNALS and the functions used below), checked by tests/test_compat.py.


def _sampler(storage, study_name: str, seed: Optional[int]) -> optuna.samplers.TPESampler:
    """The study's TPE sampler. A searcher that joins a study with trials already asked (a
    resumed or restarted study) must not replay the seeded sampler's first draws: the seed is
    shifted by the number of those trials (unchanged for a new study)."""
    if seed is None:
        return optuna.samplers.TPESampler(seed=None)
    try:
        n = len(storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False))
    except KeyError:  # the study does not exist yet
        n = 0
    return optuna.samplers.TPESampler(seed=(int(seed) + 7919 * n) % 2**32)


class StudySearcher(OptunaSearch):
    def __init__(self, space, objectives: list[Objective], *, study_name: str,
                 storage_url: str, seed: Optional[int] = None):
        self._objectives = list(objectives)
        self._storage_url = storage_url
        self._seed_value = seed
        self._name = study_name
        self._owned: dict[str, int] = {}  # ray trial id -> optuna _trial_id
        self._adopted: set[int] = set()
        storage = optuna.storages.RDBStorage(storage_url)
        super().__init__(
            space=space,
            metric=[o.metric for o in objectives],
            mode=[o.mode for o in objectives],
            study_name=study_name,
            storage=storage,
            sampler=_sampler(storage, study_name, seed),
        )

    # --- pickling: keep the URL, not the connection -------------------------------
    def __getstate__(self):
        return without_connections(self.__dict__.copy())

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._ot_trials = {}

    def _connect(self) -> None:
        if self._ot_study is None:
            storage = optuna.storages.RDBStorage(self._storage_url)
            self._ot_study = optuna.load_study(study_name=self._name, storage=storage,
                                               sampler=_sampler(storage, self._name, self._seed_value))
        for rid, tid in self._owned.items():
            if rid not in self._ot_trials:
                self._ot_trials[rid] = live_trial(self._ot_study, tid)

    # --- saving: JSON, never a pickle read back from the storage path -----------------
    # (Ray pickles the searcher object itself into its own experiment files, which are
    # trusted as Ray's; what this class adds on top is plain data.)
    CKPT_FILE_TMPL = "searcher-state-{}.json"

    def save(self, checkpoint_path: str):
        state = {"owned": self._owned, "adopted": sorted(self._adopted),
                 "completed": sorted(self._completed_trials)}
        with open(checkpoint_path, "w", encoding="utf-8") as f:
            json.dump(state, f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, encoding="utf-8") as f:
            state = json.load(f)
        self._owned = {str(k): int(v) for k, v in state["owned"].items()}
        self._adopted = {int(v) for v in state["adopted"]}
        self._completed_trials = {str(v) for v in state["completed"]}
        self._ot_study = None
        self._ot_trials = {}
        self._connect()

    # --- asking ----------------------------------------------------------------
    def _orphan(self) -> Optional[optuna.Trial]:
        owned = set(self._owned.values()) | self._adopted
        for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            tid = optuna_trial_id(t)
            if tid not in owned:
                self._adopted.add(tid)
                log.info("adopting Optuna trial %d left running by an earlier driver", t.number)
                return live_trial(self._ot_study, tid)
        return None

    def suggest(self, trial_id: str) -> Optional[dict]:
        self._connect()
        if trial_id not in self._ot_trials:
            ot_trial = self._orphan() or self._ot_study.ask()
            self._ot_trials[trial_id] = ot_trial
            self._owned[trial_id] = optuna_trial_id(ot_trial)
            ot_trial.set_user_attr(RAY_ID_ATTR, trial_id)
        ot_trial = self._ot_trials[trial_id]
        # flat keys: no unflattening (config keys never hold "/"). The Optuna trial is found
        # again by its user attr ray_trial_id (study.tracking), not through the config.
        return suggest_define_by_run(self, ot_trial)

    def on_trial_result(self, trial_id: str, result: dict):
        return  # Optuna takes no intermediate values for several objectives

    # --- telling ---------------------------------------------------------------
    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False):
        self._connect()
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        status, reason, values = settle(result, self._objectives, error)
        state = {TrialStatus.COMPLETE: TrialState.COMPLETE,
                 TrialStatus.PRUNED: TrialState.PRUNED}.get(status, TrialState.FAIL)
        tell(self._ot_study, ot_trial, state, values, status, reason)
        self._completed_trials.add(trial_id)


def tell(study, ot_trial, state, values, status: str, reason: str) -> None:
    """Tell a trial once; a trial already finished (resume after a late crash) is left as is."""
    try:
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == ot_trial.number)
        if frozen.state.is_finished():
            return
        ot_trial.set_user_attr(STATUS_ATTR, status)
        ot_trial.set_user_attr(REASON_ATTR, reason)
        study.tell(ot_trial, values if state == TrialState.COMPLETE else None, state=state)
    except Exception as exc:  # never let bookkeeping kill the study
        log.warning("could not tell Optuna trial %s: %s", getattr(ot_trial, "number", "?"), exc)
