"""The training loop: one pure function, ``train(config, table) -> TrainResult``.

It serves the CLI (:mod:`trainables.train`), the Ray Tune trainable (:mod:`study.trainable`)
and the benchmark alike; it knows nothing of Ray, Optuna or MLflow. Callers observe it through
``on_epoch(epoch, metrics, checkpoint_fn)``, called after every epoch: ``checkpoint_fn(dir)``
writes the state of the last completed epoch to a directory, and a truthy return value of
``on_epoch`` (``True``, ``"stop"`` or ``{"stop": True}``) ends the run with status ``"stopped"``.

Guarantees:

* Seeded and deterministic on CPU: ``torch.manual_seed``, a numpy ``Generator`` and a
  dedicated ``torch.Generator`` for the per-epoch shuffling, all seeded from ``config["seed"]``
  and all saved in checkpoints, so that resuming gives the same result as an uninterrupted run.
* The data live on the training device when they fit (moved once; batches are indexed on the
  device; no DataLoader).
* ``precision="bf16"`` runs the networks under bf16 autocast on CUDA (ignored elsewhere); the
  losses (Gumbel-Softmax, KL terms, divergences) are computed in fp32.
* A non-finite loss term or gradient norm ends the run with status ``"diverged"`` and a
  reason naming the epoch, step and term; the caller never sees an exception for that, and the
  last good state (end of the previous epoch) is what checkpoints hold.
* ``restarts`` R > 1 (:mod:`trainables.restarts`): R candidates (seeds ``restart_seed(seed, r)``)
  are trained for ``restart_epochs`` epochs each before anything is reported; the best separated
  is kept, its epochs are reported through ``on_epoch`` as if just trained (the choice logged in
  its last one), and it is continued to ``epochs``; with ``restart_combine="vote"`` every candidate
  trains the whole run and the run's model is their vote. Among the candidates the checkpoints hold
  the candidates done and the one in training (:mod:`trainables.restart_loop`): a run killed or
  stopped there goes on from them when resumed (a stop among them reports no epoch: nothing is
  chosen yet); after the choice of the best, a resumed run goes on as a plain run.
* ``replicas`` R > 1 (:mod:`trainables.replicas`): R copies from seeds ``replica_seed(seed, r)``
  trained in lockstep, each owning the process's random state while it trains (replica r equals
  the plain run of its seed); ``on_epoch`` and the result see their mean. The first replica
  assigns the clips; the checkpoint holds every replica, so such a run resumes exactly.
* a baseline's ``model`` (``"kmeans"``, ``"gmm"``, ... : the registry
  :data:`trainables.baselines.BASELINES`) routes to :mod:`trainables.baselines` (no epochs).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from trainables.baselines import BASELINES, check_n_clusters
from trainables.checkpoint import load_checkpoint, save_checkpoint, to_cpu_tree
from trainables.config import check_frontend, check_split, resolve_config
from trainables.evaluation import evaluate, predict_table, to_float
from trainables.replicas import OwnedRng, mean_metrics, replica_seed
from trainables.restart_loop import PROGRESS_KEY, progress_of, train_candidates
from trainables.run import Run, run_epoch, setup_run
from trainables.split_data import SplitData, fits_on_device
from trainables.status import TrialStatus

__all__ = ["TrainResult", "train", "resolve_device", "predict_table"]


@dataclass
class TrainResult:
    """What a run produced.

    status       TrialStatus: COMPLETE | DIVERGED | STOPPED (``trainables.status``)
    epochs_done  completed epochs (a diverged epoch does not count)
    metrics      final metrics: train/* and val/* of the last completed epoch, test/* on the test split
    history      one dict per completed epoch (``epoch``, ``train/...``, ``val/...``, ``lr``, ``tau``, ...)
    reason       why the run ended early ("non-finite loss term kl_z at epoch 3, step 12"), else ""
    assignments  per-clip columns: id, split, label, cluster, probabilities (list per clip)
    config       the resolved config (``n_clusters`` resolved to the number used)
    """

    status: TrialStatus
    epochs_done: int
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    reason: str = ""
    assignments: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return dev


def _stop_requested(answer: Any) -> bool:
    if answer is None or answer is False:
        return False
    if isinstance(answer, Mapping):
        return bool(answer.get("stop"))
    if isinstance(answer, str):
        return answer.lower() == "stop"
    return bool(answer)


@contextlib.contextmanager
def _deterministic(enabled: bool):
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


# ---------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------
def _train_baseline(cfg: dict[str, Any], table) -> TrainResult:
    from trainables.baselines import get_baseline

    t0 = time.perf_counter()
    out = get_baseline(cfg["model"]).run(table, int(cfg["n_clusters"]), int(cfg["seed"]),
                                         sample_size=int(cfg["silhouette_sample"]) or None,
                                         covariance_type=cfg["gmm_covariance"])
    metrics = {k: to_float(v) for k, v in dict(out.metrics).items()}
    metrics["train/time_s"] = time.perf_counter() - t0
    assignments = _assignments_from(table, np.asarray(out.clusters), getattr(out, "probabilities", None))
    return TrainResult(TrialStatus.COMPLETE, 0, metrics, [], "", assignments, cfg)


def _assignments_from(table, clusters: np.ndarray, probs) -> dict[str, Any]:
    n = len(table)
    if probs is None:
        probs_list = [[] for _ in range(n)]
    else:
        probs_list = [list(map(float, row)) for row in np.asarray(probs)]
    return {
        "id": np.asarray(table.ids).astype(str),
        "split": np.asarray(table.split).astype(str),
        "label": np.asarray(table.labels).astype(str),
        "cluster": np.asarray(clusters, dtype=np.int64),
        "probabilities": probs_list,
    }


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def train(
    config: Mapping[str, Any],
    table,
    *,
    on_epoch: Callable[[int, dict, Callable[[str], Any]], Any] | None = None,
    checkpoint_dir: str | None = None,
    resume_from: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train (or fit a baseline) on ``table`` and evaluate; see the module docstring.

    config          partial or resolved config (:func:`trainables.config.resolve_config`)
    table           a :class:`features.table.FeatureTable` with train/val/test splits
    on_epoch        ``on_epoch(epoch, metrics, checkpoint_fn)`` after every epoch; truthy -> stop
    checkpoint_dir  where to write checkpoints (every ``checkpoint_every`` epochs and at the end)
    resume_from     a checkpoint directory (or state file) to continue from
    should_stop     polled after every epoch; True -> stop
    """
    cfg = resolve_config(config, dataset=table.dataset, preset=table.preset)
    if cfg["n_clusters"] == 0:
        cfg["n_clusters"] = table.n_classes
        if cfg["n_clusters"] < 2:
            raise ValueError(f"n_clusters=0 means 'number of classes', but the data have {table.n_classes} class(es)")
    check_n_clusters(table, cfg["n_clusters"])

    check_frontend(cfg, table.preset)
    check_split(cfg, table)
    if cfg["model"] in BASELINES:
        return _train_baseline(cfg, table)

    device = resolve_device(cfg["device"])
    use_bf16 = cfg["precision"] == "bf16" and device.type == "cuda"
    with _deterministic(device.type == "cpu"):
        return _train_neural(cfg, table, device, use_bf16, on_epoch, checkpoint_dir, resume_from, should_stop)


def _checkpoint_writer(cfg, table, state: Callable[[], dict]) -> Callable[[Any], str]:
    """``write(path)``: the state ``state()`` returns (a run's last good snapshot) with the config
    and the table's identity, saved to ``path``."""
    n_freq, n_frames = table.shape

    def write(path) -> str:
        out = to_cpu_tree(state())
        out["config"] = dict(cfg)
        out["meta"] = {"preset": table.preset.name, "cache_key": str(table.cache_key),
                       "n_freq": int(n_freq), "n_frames": int(n_frames)}
        return str(save_checkpoint(path, out))
    return write


def _train_neural(cfg, table, device, use_bf16, on_epoch, checkpoint_dir, resume_from, should_stop) -> TrainResult:
    if int(cfg["replicas"]) > 1:
        return _train_replicas(cfg, table, device, use_bf16, on_epoch, checkpoint_dir, resume_from, should_stop)
    va_tab = table.select("val")
    state = None if resume_from is None else _checkpoint_states(resume_from, 1)[0]
    restarting = int(cfg["restarts"]) > 1 and (state is None or progress_of(state) is not None)
    if int(cfg["restarts"]) > 1 and cfg["restart_combine"] == "vote" and not restarting:
        raise ValueError("cannot resume: this checkpoint of a run whose restarts vote holds no candidates (written "
                         "before votes could resume); start it again")
    epochs, every = int(cfg["epochs"]), int(cfg["checkpoint_every"])
    stop, interrupted = False, ""
    if restarting:
        val_data = SplitData(va_tab, device, fits_on_device(table, device))
        out = _candidates(cfg, table, device, use_bf16, val_data, va_tab, should_stop, state, checkpoint_dir)
        run, last_good, failure = out.run, out.last_good, out.failure
        run.start_epoch = len(run.history)
        if out.interrupted:
            done = len(out.last_good[PROGRESS_KEY]["done"])
            interrupted = f"stop requested among the restarts ({done} of {cfg['restarts']} candidates trained)"
    else:
        run = setup_run(cfg, table, device, use_bf16, state)
        val_data = SplitData(va_tab, device, run.resident)
        last_good, failure = run.snapshot(run.start_epoch), ""
    write_checkpoint = _checkpoint_writer(cfg, table, lambda: last_good)
    status, reason = (TrialStatus.DIVERGED, failure) if failure else (TrialStatus.COMPLETE, "")
    if interrupted:  # nothing chosen yet: nothing reported; the checkpoint holds the candidates so far
        status, reason = TrialStatus.STOPPED, interrupted
    elif restarting and not out.reported:  # the kept candidate's epochs, reported as if they had just been trained
        for h in run.history:
            stop = (on_epoch is not None and _stop_requested(on_epoch(h["epoch"], dict(h), write_checkpoint))) or stop
        if checkpoint_dir is not None and every > 0 and run.history:
            write_checkpoint(checkpoint_dir)
        stop = stop or (should_stop is not None and should_stop())
        if stop and run.start_epoch < epochs and not failure:
            status, reason = TrialStatus.STOPPED, f"stop requested after epoch {run.start_epoch}"
    for epoch in range(run.start_epoch + 1, epochs + 1):
        if status != TrialStatus.COMPLETE:
            break
        metrics, failure = run_epoch(run, epoch, val_data, va_tab)
        if failure:
            status, reason = TrialStatus.DIVERGED, failure
            break
        last_good = run.snapshot(epoch)
        if checkpoint_dir is not None and every > 0 and epoch % every == 0:
            write_checkpoint(checkpoint_dir)
        stop = on_epoch is not None and _stop_requested(on_epoch(epoch, dict(metrics), write_checkpoint))
        if (stop or (should_stop is not None and should_stop())) and epoch < epochs:
            status, reason = TrialStatus.STOPPED, f"stop requested after epoch {epoch}"
            break
    return _finish(run, table, status, reason, last_good, checkpoint_dir, write_checkpoint)


def _candidates(cfg, table, device, use_bf16, val_data, va_tab, should_stop, state, checkpoint_dir):
    """The restarts' candidates trained (trainables.restart_loop), from ``state``'s progress when resuming;
    their checkpoints go to ``checkpoint_dir``."""
    identity = {} if state is None else {"config": state.get("config", {}), "meta": state.get("meta", {})}

    def save(st):
        return _checkpoint_writer(cfg, table, lambda: st)(checkpoint_dir)
    return train_candidates(cfg, table, device, use_bf16, val_data, va_tab, should_stop, saved=progress_of(state),
                            identity=identity, save=None if checkpoint_dir is None else save)


def _train_replicas(cfg, table, device, use_bf16, on_epoch, checkpoint_dir, resume_from, should_stop) -> TrainResult:
    """``replicas`` R copies of the run (seeds ``replica_seed(seed, r)``) trained in lockstep, each
    owning the process's random state while it trains; ``on_epoch`` and the result see their mean
    (trainables.replicas). The first replica's model assigns the clips; the checkpoint is its state
    with the other replicas' beside it (``replicas``), so the run resumes as a whole."""
    n = int(cfg["replicas"])
    states = _checkpoint_states(resume_from, n) if resume_from is not None else [None] * n
    rngs = [OwnedRng() for _ in range(n)]
    runs, last_good = [], []
    for r, rng in enumerate(rngs):
        with rng.owned():
            runs.append(setup_run(cfg, table, device, use_bf16, states[r], seed=replica_seed(int(cfg["seed"]), r)))
            last_good.append(runs[-1].snapshot(runs[-1].start_epoch))
    va_tab = table.select("val")
    val_data = SplitData(va_tab, device, runs[0].resident)
    start = runs[0].start_epoch
    write_checkpoint = _checkpoint_writer(cfg, table, lambda: {**last_good[0], "replicas": last_good[1:]})
    status, reason = TrialStatus.COMPLETE, ""
    history = [mean_metrics([run.history[e] for run in runs]) for e in range(start)]
    epochs, every = int(cfg["epochs"]), int(cfg["checkpoint_every"])
    for epoch in range(start + 1, epochs + 1):
        per_replica, snapshots = [], []
        for r, (run, rng) in enumerate(zip(runs, rngs)):
            with rng.owned():
                metrics, failure = run_epoch(run, epoch, val_data, va_tab)
                if not failure:
                    snapshots.append(run.snapshot(epoch))
            if failure:
                status, reason = TrialStatus.DIVERGED, f"replica {r} (seed {run.seed}): {failure}"
                break
            per_replica.append(metrics)
        if status != TrialStatus.COMPLETE:
            break  # every replica goes back to the last epoch they all completed
        last_good = snapshots
        history.append(mean_metrics(per_replica))
        if checkpoint_dir is not None and every > 0 and epoch % every == 0:
            write_checkpoint(checkpoint_dir)
        stop = on_epoch is not None and _stop_requested(on_epoch(epoch, dict(history[-1]), write_checkpoint))
        if (stop or (should_stop is not None and should_stop())) and epoch < epochs:
            status, reason = TrialStatus.STOPPED, f"stop requested after epoch {epoch}"
            break
    results = []
    for r, (run, rng) in enumerate(zip(runs, rngs)):
        with rng.owned():
            results.append(_finish(run, table, status, reason, last_good[r], checkpoint_dir if r == 0 else None,
                                   write_checkpoint))
    first = results[0]
    final = mean_metrics([res.metrics for res in results])
    return TrainResult(first.status, first.epochs_done, final, history, reason, first.assignments, dict(cfg))


def _checkpoint_states(resume_from, n: int) -> list[dict]:
    """The run states of the checkpoint in ``resume_from``, one per replica (``n``; a plain run: 1):
    the first is the checkpoint itself (what predict reads), the other replicas' ride along under
    ``replicas``; a ValueError where it holds another number of them."""
    st = load_checkpoint(resume_from, map_location="cpu")
    others = st.get("replicas", [])
    if len(others) != n - 1:
        held = f"{len(others) + 1} replica" + ("s" if others else "")
        raise ValueError(f"cannot resume: the checkpoint holds {held}, the config asks for {n if n > 1 else 'one'}; "
                         f"resume with replicas={len(others) + 1} or start again")
    first = {k: v for k, v in st.items() if k != "replicas"}
    return [first, *({**o, "config": st.get("config", {}), "meta": st.get("meta", {})} for o in others)]


def _finish(run: Run, table, status, reason, last_good, checkpoint_dir, write_checkpoint) -> TrainResult:
    """Final checkpoint, test metrics and per-clip assignments (a diverged run: last good weights)."""
    epochs_done = int(last_good["epoch"])
    if checkpoint_dir is not None and epochs_done > 0:
        write_checkpoint(checkpoint_dir)  # the last good state (idempotent when already written)
    if status == TrialStatus.DIVERGED:
        run.model.load_state_dict(last_good["model"])
    final: dict[str, Any] = {}
    if run.history:
        final.update({k: v for k, v in run.history[-1].items() if k.startswith(("train/", "val/"))})
    final.update(run.summary)
    final["epoch"] = epochs_done
    device, resident = run.train_data.device, run.resident
    te_tab = table.select("test")
    if len(te_tab):
        final.update(evaluate(run.model, SplitData(te_tab, device, resident), te_tab.labels, run.cfg, "test/",
                              run.augmenter)[0])
    pred_all = predict_table(run.model, SplitData(table, device, resident), run.cfg, run.augmenter)
    assignments = _assignments_from(table, pred_all["cluster"], pred_all["probs"])
    return TrainResult(status, epochs_done, final, run.history, reason, assignments, dict(run.cfg))
