"""Every reach into a library's private internals (study.compat) against the installed Ray,
Optuna and torch: the attribute or constructor exists and behaves as the study expects, so that
an upgrade that moves one fails here, naming it, rather than a study mid-run. The public APIs
that replaced earlier reaches are checked too (the last tests)."""
from __future__ import annotations

import ast
import inspect
import pickle

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from study import compat
from study.objectives import parse_objectives
from study.searcher import StudySearcher

OBJECTIVES = parse_objectives(["val/silhouette_z:max", "val/acc:max"])
UPGRADE = "no longer holds: update study/compat.py (and its callers) to the installed version"


def space(trial):
    trial.suggest_float("lam", 0.05, 20.0, log=True)
    trial.suggest_categorical("divergence", ["euc", "is"])
    return {"model": "cat_uvac"}


@pytest.fixture
def storage(tmp_path):
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db")


def _ray_search(storage):
    sampler = optuna.samplers.TPESampler(seed=0)
    return OptunaSearch(space=space, metric=[o.metric for o in OBJECTIVES], mode=[o.mode for o in OBJECTIVES],
                        study_name="s", storage=storage, sampler=sampler), sampler


def test_ray_optuna_search_internals(storage):
    s, sampler = _ray_search(storage)
    missing = [name for name in compat.RAY_INTERNALS if not hasattr(s, name)]
    assert not missing, f"Ray's OptunaSearch: {missing} {UPGRADE}"
    assert isinstance(s._ot_study, optuna.Study) and s._ot_study.study_name == "s", f"_ot_study {UPGRADE}"
    assert s._storage is storage and s._sampler is sampler, f"_storage / _sampler {UPGRADE}"
    assert s._ot_trials == {} and s._completed_trials == set(), f"_ot_trials / _completed_trials {UPGRADE}"
    assert s._space is space, f"_space {UPGRADE}"
    trial = s._ot_study.ask()
    config = compat.suggest_define_by_run(s, trial)
    assert config == {**trial.params, "model": "cat_uvac"} and set(trial.params) == {"lam", "divergence"}, \
        f"_suggest_from_define_by_run_func {UPGRADE}"


def test_study_searcher_attributes_do_not_shadow_ray_ones(storage):
    """The attributes StudySearcher sets beyond RAY_INTERNALS are its own: Ray's OptunaSearch has none
    of those names (an upgrade that adds one would silently share it)."""
    tree = ast.parse(inspect.getsource(StudySearcher))
    ours = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
            and isinstance(n.value, ast.Name) and n.value.id == "self"} - set(compat.RAY_INTERNALS)
    assert ours, "no attribute of StudySearcher found"
    clash = sorted(ours & (set(vars(_ray_search(storage)[0])) | set(dir(OptunaSearch))))
    assert not clash, f"Ray's OptunaSearch now has {clash} too: rename them in study/searcher.py"


def test_without_connections_leaves_plain_data(tmp_path):
    s = StudySearcher(space, OBJECTIVES, study_name="s", storage_url=f"sqlite:///{tmp_path}/o.db", seed=1)
    s.suggest("ray-a")
    state = compat.without_connections(s.__dict__.copy())
    live = (optuna.Study, optuna.Trial, optuna.storages.BaseStorage, optuna.samplers.BaseSampler)
    held = sorted(k for k, v in state.items() if isinstance(v, live))
    assert not held, f"Ray's OptunaSearch keeps live Optuna objects in {held}: add them to OPTUNA_SEARCH_CONNECTIONS"
    again = pickle.loads(pickle.dumps(s))
    assert again.suggest("ray-a") == s.suggest("ray-a")  # reconnected, same trial


def test_optuna_trial_id_is_the_storage_id(storage):
    optuna.create_study(study_name="other", storage=storage).ask()  # ids are per storage, numbers per study
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "maximize"])
    asked = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    public = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("s"), asked.number)
    assert compat.optuna_trial_id(asked) == compat.optuna_trial_id(frozen) == public, f"_trial_id {UPGRADE}"
    assert public != asked.number


def test_live_trial_goes_on_with_a_running_trial(storage):
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "maximize"])
    asked = study.ask()
    lam = asked.suggest_float("lam", 0.05, 20.0, log=True)
    again = compat.live_trial(study, compat.optuna_trial_id(asked))
    assert isinstance(again, optuna.Trial) and again.number == asked.number, f"optuna.Trial(study, id) {UPGRADE}"
    assert again.suggest_float("lam", 0.05, 20.0, log=True) == lam  # the drawn value, not a new draw
    again.set_user_attr("status", "complete")
    study.tell(again, [0.1, 0.2])
    t = study.get_trials()[0]
    assert t.state == TrialState.COMPLETE and t.user_attrs == {"status": "complete"} and t.params == {"lam": lam}


# ---- the public APIs that replaced private reaches ------------------------------------------------
def test_public_replacements():
    import torch.nn.modules.batchnorm as batchnorm
    from ray.tune.experiment import Trial
    from study.schedulers import MOASHAScheduler
    from trainables.models.base import BATCHNORMS

    assert {c.__name__ for c in BATCHNORMS} == set(batchnorm.__all__), \
        "torch's BatchNorm classes changed: update trainables.models.base.BATCHNORMS"
    assert isinstance(Trial.num_failures, property), "Ray's Trial.num_failures is gone (study.tracking)"
    sched = MOASHAScheduler(OBJECTIVES, epochs=9)
    assert sched.metric == OBJECTIVES[0].metric, "TrialScheduler.set_search_properties no longer sets metric"
