"""A real multi-node Ray cluster on one machine (ray.cluster_utils.Cluster: a head with no
CPUs, so that it runs no trial, and two 1-CPU worker nodes), with token authentication
on as on the real cluster, driven by the real study engine (study.engine.run_study with
--address), Optuna and MLflow on SQLite, and Ray's trial storage in a directory every node
shares.

While the study runs, the node that hosts a trial is killed (SIGKILL of its raylet and
workers) right after that trial's first checkpointed epoch. The trial must come back on the
surviving node from its last checkpoint (FailureConfig.max_failures), not from epoch 1,
and the study must end with every trial accounted for exactly once, in Optuna and in MLflow.
"""
from __future__ import annotations

import os
import secrets
import threading
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import ray
from optuna.trial import TrialState
from ray._private import ray_constants
from ray.cluster_utils import Cluster
from ray.tune import Callback

from study.engine import run_study
from study.options import StudyOptions
from study.trial_index import TrialIndex
from tests.study_helpers import TINY, build_features, mlflow_children, optuna_trials

# What the callbacks on the driver see; the callbacks themselves hold only a key so that
# they stay picklable (Tune stores them in its experiment state).
_HOOKS: dict[str, "Observer"] = {}


class HookCallback(Callback):
    def __init__(self, key: str):
        self.key = key

    def on_trial_result(self, iteration, trials, trial, result, **info):
        _HOOKS[self.key].on_result(trial, result)


def _parents(pid: int) -> list[int]:
    """The ancestors of a process, from /proc (Linux; Ray's multi-node clusters are Linux)."""
    out = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        out.append(pid)
    return out


def _raylet_pid(node) -> int:
    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


class Observer:
    """Records which node reported each epoch of each trial. Once, right after a trial's
    checkpointed epoch, kills the node it runs on (SIGKILL, as a crash or a spot reclaim would)
    and adds a replacement node, as the autoscaler would."""

    def __init__(self, cluster: Cluster, epochs: int):
        self.cluster = cluster
        self.epochs = epochs
        self.lock = threading.Lock()
        self.reports: dict[str, list[tuple[int, int, str]]] = defaultdict(list)  # trial -> (epoch, pid, node)
        self.killed: dict | None = None
        self.raylets = {_raylet_pid(n): n for n in cluster.worker_nodes}
        self.first_nodes = {n.node_id for n in cluster.worker_nodes}
        self.replacement = None

    def node_of(self, pid: int):
        with self.lock:
            raylets = dict(self.raylets)
        for parent in _parents(pid):
            if parent in raylets:
                return raylets[parent]
        return None

    def _add_replacement(self):
        node = self.cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024)
        with self.lock:
            self.raylets[_raylet_pid(node)] = node
            self.replacement = node

    def on_result(self, trial, result):
        number = trial.trial_id  # the Ray trial id: one key per trial
        epoch = int(result.get("epoch", 0))
        pid = int(result["pid"])
        node = self.node_of(pid)
        self.reports[number].append((epoch, pid, node.node_id if node else "?"))
        if (self.killed is None and node is not None and "trial_status" not in result
                and trial.checkpoint is not None and 1 <= epoch <= self.epochs - 2):
            self.killed = {"trial": number, "epoch": epoch, "node": node.node_id, "pid": pid}
            with self.lock:
                del self.raylets[_raylet_pid(node)]
            self.cluster.remove_node(node, allow_graceful=False)
            # On the driver's main thread (Ray's node start installs signal handlers).
            self._add_replacement()


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory):
    """Head (0 CPU) + two 1-CPU worker nodes, all with RAY_AUTH_MODE=token and one token read
    from a file (RAY_AUTH_TOKEN_PATH), as cluster.yaml sets up every node."""
    from ray._raylet import AuthenticationTokenLoader, Config

    if ray.is_initialized():
        ray.shutdown()
    base = tmp_path_factory.mktemp("token_cluster")
    token_file = base / "secrets" / "ray_auth_token"
    token_file.parent.mkdir(mode=0o700)
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
        mp.delenv("RAY_AUTH_TOKEN", raising=False)
        # This process read RAY_AUTH_MODE into its cached RayConfig when ray was first used (the
        # trap: it keeps "disabled" and its GCS client sends no token); refresh config and token.
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
        # A lost node is declared dead after ~3 s instead of the default ~15 s.
        fast_health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                "_system_config": fast_health})
        try:
            for _ in range(2):
                cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024)
            cluster.wait_for_nodes()
            yield cluster
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def test_token_is_required_to_join(token_cluster, tmp_path):
    """A client without the cluster's token is refused; with it, it sees all three nodes."""
    import subprocess
    import sys

    code = ("import ray; ray.init(address='{a}', include_dashboard=False, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()), ray.cluster_resources().get('CPU'))").format(
        a=token_cluster.address)
    env = dict(os.environ)
    ok = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.split()[-2:] == ["3", "2.0"]

    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(32))
    env["RAY_AUTH_TOKEN_PATH"] = str(wrong)
    env["RAY_py_gcs_connect_timeout_s"] = "5"  # fail fast instead of retrying for a minute
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert "auth" in (bad.stderr + bad.stdout).lower()


def test_study_spreads_over_nodes_and_survives_a_node_loss(token_cluster, tmp_path):
    epochs, n_trials = 5, 3
    features = build_features(tmp_path, limit=240)
    shared = tmp_path / "shared"  # what every node mounts (NFS / S3 on a real cluster)
    observer = Observer(token_cluster, epochs)
    key = uuid.uuid4().hex
    _HOOKS[key] = observer
    try:
        opts = StudyOptions(
            space="cat_uvac", features=features, num_samples=n_trials, epochs=epochs, max_concurrent=2,
            cpus_per_trial=1.0, max_failures=2, study_name="multinode", address=token_cluster.address,
            storage=f"sqlite:///{tmp_path}/optuna.db", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
            storage_path=str(shared / "ray"), overrides=dict(TINY), progress_every_s=1e9)
        res = run_study(opts, extra_callbacks=[HookCallback(key)])
    finally:
        _HOOKS.pop(key, None)

    killed = observer.killed
    assert killed is not None, f"no trial was caught mid-run: {dict(observer.reports)}"
    reports = observer.reports
    nodes_used = {node for rs in reports.values() for _, _, node in rs}
    assert "?" not in nodes_used, dict(reports)

    # Trials ran on both first worker nodes (the head has no CPU, so none ran there).
    assert observer.first_nodes <= nodes_used, (nodes_used, observer.first_nodes)

    # The killed trial came back on another node, from its checkpoint: its first epoch after
    # the kill follows a checkpointed one instead of starting again at 1, and it finished.
    rs = reports[killed["trial"]]
    before = [r for r in rs if r[1] == killed["pid"]]
    after = [r for r in rs if r[1] != killed["pid"]]
    assert before and after, rs
    assert killed["node"] not in {node for _, _, node in after}, rs
    assert observer.replacement is not None
    assert 2 <= after[0][0] <= killed["epoch"] + 2, rs
    assert 1 not in [e for e, _, _ in after]
    assert max(e for e, _, _ in rs) == epochs

    # Every trial accounted for exactly once: Optuna ...
    assert not res.interrupted
    trials = optuna_trials(res)
    assert sorted(t.number for t in trials) == list(range(n_trials))
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    assert res.counts["failed"] == 0 and res.counts["running"] == 0
    assert res.counts["complete"] + res.counts["diverged"] == n_trials
    killed_number = TrialIndex(res.storage, "multinode").number(killed["trial"])
    assert trials[killed_number].user_attrs.get("status") in ("complete", "diverged")

    # ... and MLflow: one child run per trial (the retried trial continued its own run).
    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    numbers = sorted(int(r.data.tags["trial.number"]) for r in children)
    assert numbers == list(range(n_trials))
    by_number = {int(r.data.tags["trial.number"]): r for r in children}
    run = by_number[killed_number]
    assert run.data.tags.get("trial.retries") == "1"
    assert run.info.status in ("FINISHED", "FAILED") and run.data.tags["trial.status"] in ("complete", "diverged")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert set(range(1, epochs + 1)) <= set(steps)
    assert sorted(set(steps)) == sorted(steps)  # each epoch once (the final report adds only test/)
    for r in children:
        assert r.info.status != "RUNNING"

    # Ray kept the checkpoints in the shared storage, not on the lost node.
    ckpts = list(Path(shared, "ray", "multinode").glob("trial_*/checkpoint_*"))
    assert ckpts


@pytest.mark.slow
def test_launch_cli_joins_the_cluster(token_cluster, tmp_path):
    """The real entry point, as `ray job submit` runs it on the head: a separate driver process
    that joins the token cluster by --address (it has the token through the environment)."""
    import subprocess
    import sys

    features = build_features(tmp_path, limit=120)
    cmd = [sys.executable, "-m", "study.launch", "--space", "cat_uvac", "--smoke-test",
           "--address", token_cluster.address, "--features", features, "--study-name", "cli-multinode",
           "--storage", f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
           "--storage-path", str(tmp_path / "shared" / "ray")]
    for k, v in TINY.items():
        cmd += ["--set", f"{k}={v}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ),
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "study cli-multinode:" in proc.stdout
    trials = optuna_trials(f"sqlite:///{tmp_path}/optuna.db", "cli-multinode")
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)
    from study.tracking import find_parent
    parent = find_parent(f"sqlite:///{tmp_path}/mlflow.db", "vac-study", "cli-multinode")
    _, children = mlflow_children(f"sqlite:///{tmp_path}/mlflow.db", parent)
    assert sorted(r.data.tags["trial.number"] for r in children) == ["0", "1"]
