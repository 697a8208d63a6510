"""StudySearcher against the installed Ray and Optuna: its saved state is plain JSON (no pickle
read back from the storage path), and a searcher restored from that state continues the same
Optuna trials without replaying draws. The Ray internals it relies on: tests/test_compat.py."""
from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState

from study.objectives import parse_objectives
from study.searcher import StudySearcher


def space(trial):
    trial.suggest_float("lam", 0.05, 20.0, log=True)
    trial.suggest_categorical("divergence", ["euc", "is"])
    return {"model": "cat_uvac"}


def _searcher(storage: str, seed: int = 1) -> StudySearcher:
    objs = parse_objectives(["val/silhouette_z:max", "val/acc:max"])
    return StudySearcher(space, objs, study_name="s", storage_url=storage, seed=seed)


def test_state_is_json_and_a_restored_searcher_continues(tmp_path):
    storage = f"sqlite:///{tmp_path}/o.db"
    s = _searcher(storage)
    first = s.suggest("ray-a")
    second = s.suggest("ray-b")
    s.on_trial_complete("ray-a", {"val/silhouette_z": 0.2, "val/acc": 0.5, "trial_status": "complete",
                                  "trial_reason": ""})
    path = tmp_path / s.CKPT_FILE_TMPL.format("x")
    assert path.suffix == ".json"
    s.save(str(path))
    state = json.loads(path.read_text())  # plain data, readable without unpickling anything
    assert state["completed"] == ["ray-a"] and set(state["owned"]) == {"ray-a", "ray-b"}

    again = _searcher(storage)
    again.restore(str(path))
    assert again.suggest("ray-b") == second  # the same Optuna trial, not a new one
    assert set(again._ot_trials) == {"ray-a", "ray-b"}
    third = again.suggest("ray-c")
    assert third != first  # the reconnected sampler does not replay the first draw
    again.on_trial_complete("ray-b", None, error=True)
    trials = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING]
    assert all(t.user_attrs["ray_trial_id"] == rid for t, rid in zip(trials, ["ray-a", "ray-b", "ray-c"]))
