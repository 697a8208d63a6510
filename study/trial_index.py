"""Ray trial id -> Optuna trial: the one link between a Tune trial and its Optuna trial.

The searcher (study.searcher) stamps every Optuna trial it asks with the user attr
``ray_trial_id``; driver-side callbacks (MLflow tracking, progress) find the trial's number
through it, so the trial config carries no bookkeeping key. Only the storage URL is
pickled (callbacks are pickled with the experiment for ``--resume``).
"""
from __future__ import annotations

from typing import Optional

from study.compat import optuna_trial_id
from study.tags import MLFLOW_RUN_ATTR, RAY_ID_ATTR  # the link's user attrs, re-exported

__all__ = ["MLFLOW_RUN_ATTR", "RAY_ID_ATTR", "TrialIndex"]


class TrialIndex:
    def __init__(self, storage_url: str, study_name: str):
        self.storage_url = storage_url
        self.study_name = study_name
        self._ids: dict[str, tuple[int, int]] = {}  # ray trial id -> (optuna _trial_id, number)
        self._storage = None

    def __getstate__(self):
        return {"storage_url": self.storage_url, "study_name": self.study_name, "_ids": {}, "_storage": None}

    def _store(self):
        if self._storage is None:
            import optuna
            self._storage = optuna.storages.RDBStorage(self.storage_url)
        return self._storage

    def _lookup(self, ray_trial_id: str) -> Optional[tuple[int, int]]:
        if ray_trial_id not in self._ids:
            store = self._store()
            sid = store.get_study_id_from_name(self.study_name)
            for t in store.get_all_trials(sid, deepcopy=False):
                rid = t.user_attrs.get(RAY_ID_ATTR)
                if rid is not None:
                    self._ids[rid] = (optuna_trial_id(t), t.number)
        return self._ids.get(ray_trial_id)

    def number(self, ray_trial_id: str) -> Optional[int]:
        """The Optuna trial number of a Ray trial (None before the searcher asked for it)."""
        found = self._lookup(ray_trial_id)
        return None if found is None else found[1]

    def label(self, ray_trial_id: str) -> str:
        n = self.number(ray_trial_id)
        return f"trial {n}" if n is not None else f"trial {ray_trial_id}"

    def set_attr(self, ray_trial_id: str, key: str, value) -> bool:
        """Set a user attr on the (unfinished) Optuna trial; False when it is finished or unknown."""
        found = self._lookup(ray_trial_id)
        if found is None:
            return False
        store = self._store()
        if store.get_trial(found[0]).state.is_finished():
            return False
        store.set_trial_user_attr(found[0], key, value)
        return True

    def params(self, ray_trial_id: str) -> dict:
        """The Optuna trial's searched params (what the sampler drew; pinned keys are not in
        them); {} when the trial is unknown."""
        found = self._lookup(ray_trial_id)
        return dict(self._store().get_trial(found[0]).params) if found is not None else {}
