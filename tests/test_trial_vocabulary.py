"""One definition of each trial status and each store name: ``trainables.status.TrialStatus``
(the status strings), ``study.tags`` (MLflow tag names, ``study.state`` values, Optuna user
attrs). The values are what the stores already hold, so they never change; and no module
spells one of them out again as a literal string."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from study import tags
from study.tags import StudyState
from trainables.status import ENDINGS, TrialStatus

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "trainables", "study", "analysis", "benchmarks")
STATUS_DEFINED_IN = {"trainables/status.py", "study/tags.py"}  # TrialStatus; StudyState
TAGS_DEFINED_IN = "study/tags.py"
# Literals that are status words but name something else.
NOT_A_STATUS: set[tuple[str, str]] = set()  # (file, literal) pairs, should a status word ever name something else


def test_trial_status_values_are_the_stored_strings():
    assert {s.name: s.value for s in TrialStatus} == {
        "COMPLETE": "complete", "PRUNED": "pruned", "DIVERGED": "diverged", "FAILED": "failed",
        "RUNNING": "running", "INTERRUPTED": "interrupted", "STOPPED": "stopped"}
    assert ENDINGS == ("complete", "pruned", "diverged", "failed")  # the order counts are reported in


def test_a_status_is_its_string():
    s = TrialStatus.DIVERGED
    assert isinstance(s, str) and s == "diverged" and TrialStatus("diverged") is s
    assert str(s) == f"{s}" == "%s" % s == "diverged" and f"{s:<9}|" == "diverged |"
    assert json.dumps({TrialStatus.COMPLETE: TrialStatus.PRUNED}) == '{"complete": "pruned"}'
    assert {"complete": 1}[TrialStatus.COMPLETE] == 1 and {TrialStatus.COMPLETE: 1}["complete"] == 1


def test_study_state_values():
    assert {s.name: s.value for s in StudyState} == {
        "RUNNING": "running", "FINISHED": "finished", "INTERRUPTED": "interrupted", "FAILED": "failed"}


def _names() -> dict[str, str]:
    return {k: v for k, v in vars(tags).items() if k.endswith(("_TAG", "_ATTR")) and isinstance(v, str)}


def test_tag_names_are_the_stored_strings():
    assert _names() == {
        "STUDY_NAME_TAG": "study.name", "STUDY_KIND_TAG": "study.kind", "STUDY_SPACE_TAG": "study.space",
        "STUDY_DATASET_TAG": "study.dataset", "STUDY_CACHE_KEY_TAG": "study.cache_key",
        "STUDY_GIT_COMMIT_TAG": "study.git_commit", "STUDY_OBJECTIVES_TAG": "study.objectives",
        "STUDY_SEED_TAG": "study.seed", "STUDY_PINNED_TAG": "study.pinned", "STUDY_STORAGE_TAG": "study.storage",
        "STUDY_FRONTENDS_TAG": "study.frontends", "STUDY_STATE_TAG": "study.state",
        "STUDY_FAILURE_TAG": "study.failure", "STUDY_FINISHED_TRIALS_TAG": "study.finished_trials",
        "STUDY_PARETO_TRIALS_TAG": "study.pareto_trials", "STRONGEST_TAG": "baseline.strongest",
        "STRONGEST_WITH_SPEAKER_IDS_TAG": "baseline.strongest_with_speaker_ids",
        "PARENT_RUN_TAG": "mlflow.parentRunId", "TRIAL_NUMBER_TAG": "trial.number",
        "TRIAL_RAY_ID_TAG": "trial.ray_id", "TRIAL_STATUS_TAG": "trial.status", "TRIAL_REASON_TAG": "trial.reason",
        "TRIAL_RETRIES_TAG": "trial.retries", "OPTUNA_STUDY_TAG": "optuna.study",
        "OPTUNA_STORAGE_TAG": "optuna.storage", "NOTE_TAG": "mlflow.note.content",
        "EXPERIMENT_KIND_TAG": "mlflow.experimentKind", "SHARED_VIEW_TAG": "mlflow.sharedViewState.",
        "REPLICATION_NAME_TAG": "replication.name", "REPLICATION_STATE_TAG": "replication.state",
        "REPLICATION_SOURCE_RUNS_TAG": "replication.source_runs", "REPLICATION_SEEDS_TAG": "replication.seeds",
        "REPLICATION_OVERRIDES_TAG": "replication.overrides",
        "REPLICATION_BASELINES_TAG": "replication.baselines", "REPLICATION_FEATURES_TAG": "replication.features",
        "REPLICATION_COMPLETED_TAG": "replication.completed", "REPLICATION_METHOD_TAG": "replication.method",
        "REPLICATION_MODEL_TAG": "replication.model", "REPLICATION_SOURCE_RUN_TAG": "replication.source_run",
        "REPLICATION_SEED_TAG": "replication.seed", "REPLICATION_REPRESENTATION_TAG": "replication.representation",
        "RAY_ID_ATTR": "ray_trial_id", "MLFLOW_RUN_ATTR": "mlflow_run_id", "STATUS_ATTR": "status",
        "REASON_ATTR": "reason"}
    assert (tags.KIND_STUDY, tags.KIND_REPLICATION) == ("study", "replication")


def test_the_names_import_nothing_heavy():
    """trainables.status and study.tags are read by the analysis, which must stay torch-free."""
    code = ("import json, sys\nimport trainables.status, study.tags\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'ray', 'mlflow', 'optuna', 'numpy', 'features'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


# ------------------------------------------------------------------ no literal spelled again
def _literals(path: Path):
    """(line, text) of every string constant in the module, docstrings and bare string
    statements left out; f-strings give their literal parts."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bare = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare:
            yield node.lineno, node.value


SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
# tags.`study.name`, tags.mlflow.parentRunId = ... inside an MLflow search filter
_IN_FILTER = re.compile(r"tags\.`?(" + "|".join(re.escape(v) for v in _names().values() if "." in v) + r")(?=[`\s=]|$)")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_status_or_tag_name_spelled_out(path):
    rel = path.relative_to(ROOT).as_posix()
    statuses = {s.value for s in TrialStatus} | {s.value for s in StudyState}
    names = set(_names().values())
    bad = []
    for line, text in _literals(path):
        if text in statuses and rel not in STATUS_DEFINED_IN and (rel, text) not in NOT_A_STATUS:
            bad.append(f"{rel}:{line}: status {text!r} (use trainables.status.TrialStatus / study.tags.StudyState)")
        if rel != TAGS_DEFINED_IN and ((text in names and "." in text)
                                       or text in (tags.RAY_ID_ATTR, tags.MLFLOW_RUN_ATTR)
                                       or _IN_FILTER.search(text)):
            bad.append(f"{rel}:{line}: store name in {text!r} (use the constant of study.tags)")
    assert bad == []


def test_the_literal_check_sees_a_literal(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""complete trial.status"""\nx = {"trial.status": "pruned"}\n'
                 'q = f"tags.`study.name` = \'{x}\'"\nname = "study.name is a tag"\n', encoding="utf-8")
    found = [text for _, text in _literals(f)]
    assert "trial.status" in found and "pruned" in found and "complete trial.status" not in found
    hits = [t for t in found if _IN_FILTER.search(t)]
    assert hits == ["tags.`study.name` = '"]
