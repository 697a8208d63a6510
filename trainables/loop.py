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
  its last one), and it is continued to ``epochs``. Checkpoints start after the choice (a run
  killed among its candidates starts them again); a resumed run does not restart.
* a baseline's ``model`` (``"kmeans"``, ``"gmm"``, ... : the registry
  :data:`trainables.baselines.BASELINES`) routes to :mod:`trainables.baselines` (no epochs).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from trainables.augment import augmenter_for
from trainables.baselines import BASELINES, check_n_clusters
from trainables.checkpoint import clone_tree, load_checkpoint, rng_state, save_checkpoint, set_rng_state, to_cpu_tree
from trainables.config import check_frontend, resolve_config, structural_keys
from trainables.evaluation import EVAL_BATCH, evaluate, predict_table, to_float
from trainables.models import Batch, ClusteringModel, build_model
from trainables.restarts import (Candidate, VotingEnsemble, choose, most_agreeing, restart_epochs, restart_metrics,
                                 restart_seed, separation, vote_maps)
from trainables.schedules import lr_at
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
    if cfg["model"] in BASELINES:
        return _train_baseline(cfg, table)

    device = resolve_device(cfg["device"])
    use_bf16 = cfg["precision"] == "bf16" and device.type == "cuda"
    with _deterministic(device.type == "cpu"):
        return _train_neural(cfg, table, device, use_bf16, on_epoch, checkpoint_dir, resume_from, should_stop)


@dataclass
class _Run:
    """The state of one neural run: what the epoch loop reads and updates."""

    cfg: dict[str, Any]
    model: ClusteringModel
    optimizer: torch.optim.Optimizer
    train_data: SplitData
    shuffle_gen: torch.Generator
    np_gen: np.random.Generator
    autocast: Any
    resident: bool  # the data live on the device (decided once, for every split)
    seed: int  # what seeded this run (config["seed"], or a restart's: trainables.restarts)
    augmenter: Any = None  # makes each batch's augmented view (trainables.augment), or None
    start_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)  # final metrics of the run as a whole (restarts)

    def train_batches(self) -> Iterator[Batch]:
        return self.train_data.in_order(EVAL_BATCH)

    def snapshot(self, epoch: int) -> dict[str, Any]:
        return {"model": clone_tree(self.model.state_dict()), "optimizer": clone_tree(self.optimizer.state_dict()),
                "epoch": int(epoch), "global_step": int(self.global_step), "seed": int(self.seed),
                "rng": clone_tree(rng_state(self.shuffle_gen, self.np_gen)), "history": [dict(h) for h in self.history]}


def _setup_run(cfg, table, device, use_bf16, resume_from, seed: int | None = None) -> _Run:
    """Seeds (``seed``, default the config's), data on the device, the registered model and its
    optimizer; restored from a checkpoint when ``resume_from`` is given (else the model's
    data-dependent initialisation)."""
    seed = int(cfg["seed"]) if seed is None else int(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    shuffle_gen = torch.Generator(device="cpu")
    shuffle_gen.manual_seed(seed)
    tr_tab = table.select("train")
    if len(tr_tab) < 2:
        raise ValueError(f"the train split has {len(tr_tab)} clip(s); at least 2 are needed")
    model = build_model(cfg, *table.shape, preset=table.preset).to(device)
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
    resident = fits_on_device(table, device)
    run = _Run(cfg, model, torch.optim.Adam(model.parameters(), lr=float(cfg["lr_start"])),
               SplitData(tr_tab, device, resident, groups=float(cfg["speaker_independence"]) > 0), shuffle_gen,
               np.random.default_rng(seed), autocast, resident, seed,
               augmenter_for(cfg, table.preset))
    if resume_from is None:
        model.on_train_start(run.train_batches, seed)
        return run
    if int(cfg["restarts"]) > 1 and cfg["restart_combine"] == "vote":
        raise ValueError("cannot resume: a run whose restarts vote (restart_combine vote) is checkpointed only when "
                         "finished, as its voting ensemble; start it again")
    st = load_checkpoint(resume_from, map_location="cpu")
    old_key = st.get("meta", {}).get("cache_key")
    if old_key is not None and old_key != table.cache_key:
        raise ValueError(
            f"cannot resume: the checkpoint was trained on feature cache {old_key}, the features given now are "
            f"{table.cache_key} (rebuilt or another cache: clips may have moved between splits); start a new run")
    old = st.get("config", {})
    diff = [k for k in structural_keys() if k in old and str(old[k]) != str(cfg[k])]
    if diff:
        raise ValueError("cannot resume: the checkpoint's config differs on "
                         + ", ".join(f"{k} ({old[k]!r} vs {cfg[k]!r})" for k in diff))
    model.load_state_dict(st["model"])
    run.optimizer.load_state_dict(st["optimizer"])
    run.start_epoch, run.global_step = int(st["epoch"]), int(st["global_step"])
    run.seed = int(st.get("seed", seed))  # a kept restart's own seed (trainables.restarts)
    run.history = list(st.get("history", []))
    set_rng_state(st["rng"], shuffle_gen, run.np_gen)
    return run


def _train_epoch(run: _Run, epoch: int) -> tuple[dict[str, Any], str]:
    """One pass over the shuffled train split (1-based ``epoch``): (train/* metrics, failure or "")."""
    cfg, model, data = run.cfg, run.model, run.train_data
    t0 = time.perf_counter()
    lr = float(lr_at(cfg, epoch - 1))
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    metrics: dict[str, Any] = dict(model.on_epoch_start(epoch - 1, run.train_batches, run.seed))
    model.train()
    bs = int(cfg["batch_size"])
    perm = torch.randperm(data.n, generator=run.shuffle_gen)
    n_batches = data.n // bs + (1 if data.n % bs > 1 else 0)  # a batch of 1 breaks BatchNorm
    sums: dict[str, float] = {}
    n_seen = 0
    clip = float(cfg["grad_clip"]) if cfg["grad_clip"] > 0 else float("inf")
    for step in range(n_batches):
        batch = data.batch(perm[step * bs:(step + 1) * bs])
        if run.augmenter is not None:
            batch = batch.with_view(*run.augmenter(batch.x, batch.mask))
        with run.autocast:
            total, terms = model.training_step(batch, (epoch - 1) + step / max(1, n_batches))
        values = {"loss": float(total.detach()), **{k: float(t.detach()) for k, t in terms.items()}}
        run.optimizer.zero_grad(set_to_none=True)
        bad = next((k for k, v in values.items() if k != "loss" and not math.isfinite(v)), None)
        if bad is None and not math.isfinite(values["loss"]):
            bad = "loss"
        if bad is None:
            total.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            if not math.isfinite(gnorm):
                return metrics, f"non-finite gradient gradient norm at epoch {epoch}, step {step + 1}"
        else:
            return metrics, f"non-finite loss term {bad} at epoch {epoch}, step {step + 1}"
        run.optimizer.step()
        run.global_step += 1
        nb = batch.x.shape[0]
        n_seen += nb
        for k, v in {**values, "grad_norm": gnorm}.items():
            sums[k] = sums.get(k, 0.0) + v * nb
    metrics.update({f"train/{k}": s / max(1, n_seen) for k, s in sums.items()})
    metrics["train/lr"] = lr
    metrics.update(model.step_logs(epoch - 1 + (n_batches - 1) / max(1, n_batches)))
    metrics["train/epoch_time_s"] = time.perf_counter() - t0
    metrics["train/samples_per_s"] = n_seen / max(1e-9, metrics["train/epoch_time_s"])
    return metrics, ""


def _before_evaluation(run: _Run) -> None:
    if run.cfg["bn_reestimate"]:
        run.model.reestimate_batchnorm(run.train_batches)


def _epoch(run: _Run, epoch: int, val_data: SplitData, va_tab) -> tuple[dict[str, Any], str]:
    """Train ``epoch`` (1-based), evaluate on the validation split and append to the history:
    (metrics, failure or "")."""
    metrics, failure = _train_epoch(run, epoch)
    if failure:
        return metrics, failure
    metrics = {"epoch": epoch, **metrics}
    t1 = time.perf_counter()
    _before_evaluation(run)
    metrics.update(evaluate(run.model, val_data, va_tab.labels, run.cfg, "val/")[0])
    metrics["val/time_s"] = time.perf_counter() - t1
    run.history.append(dict(metrics))
    return metrics, ""


def _separation(run: _Run) -> tuple[float, np.ndarray]:
    """The restart score of a run: silhouette of its clusters on its reported representation over the
    train split (trainables.restarts.separation; no labels), and its probabilities there [N, K] (what
    a vote maps)."""
    pred = predict_table(run.model, run.train_data, run.cfg)
    rep = pred[type(run.model).reported_representation]
    score = separation(rep, pred["cluster"], sample_size=int(run.cfg["silhouette_sample"]) or None,
                       seed=int(run.cfg["seed"]))
    return score, pred["probs"]


def _restart(cfg, table, device, use_bf16, val_data, va_tab, should_stop):
    """``restarts`` candidates, each trained for ``restart_epochs`` (trainables.restarts): the kept one's
    (run, last good snapshot, failure or "") -- the best separated, or where every candidate
    diverged the first one, with its failure. With ``restart_combine="vote"`` the run's model is the
    :class:`~trainables.restarts.VotingEnsemble` of the candidates that did not diverge."""
    upto, candidates, finished = restart_epochs(cfg), [], []
    kept = None  # (run, last good, candidate)
    for r in range(int(cfg["restarts"])):
        run = _setup_run(cfg, table, device, use_bf16, None, seed=restart_seed(int(cfg["seed"]), r))
        last_good, failure, stop = run.snapshot(0), "", False
        for epoch in range(1, upto + 1):
            failure = _epoch(run, epoch, val_data, va_tab)[1]
            if failure:
                break
            last_good = run.snapshot(epoch)
            stop = should_stop is not None and should_stop()
            if stop:
                break
        score, train_probs = (math.nan, None) if failure else _separation(run)
        cand = Candidate(r, run.seed, score, failure)
        candidates.append(cand)
        if not failure and cfg["restart_combine"] == "vote":  # only a vote needs every candidate kept
            finished.append((run, last_good, cand, train_probs))
        if kept is None or choose([kept[2], cand]) is cand:
            kept = (run, last_good, cand)
        if stop:
            break
    if cfg["restart_combine"] == "vote" and len(finished) > 1:
        kept = _vote(finished, val_data, va_tab)
    run, last_good, cand = kept
    if choose(candidates) is not None:
        run.summary = {**restart_metrics(candidates, cand), **run.summary}
        run.history[-1].update(run.summary)
    return run, last_good, cand.failure


def _vote(finished, val_data, va_tab):
    """(run, last good, candidate) of the voting ensemble of ``finished`` candidates (each with its
    train-split probabilities): the most agreeing candidate's run, its model replaced by the
    ensemble, whose validation metrics become the run's (``summary``)."""
    probs = [f[3] for f in finished]
    ref = most_agreeing([p.argmax(axis=1) for p in probs])
    ensemble = VotingEnsemble([f[0].model for f in finished], vote_maps(probs, ref), ref)
    run, last_good, cand, _ = finished[ref]
    run.model = ensemble
    run.summary = evaluate(ensemble, val_data, va_tab.labels, run.cfg, "val/")[0]
    return run, {**last_good, "model": clone_tree(ensemble.state_dict())}, cand


def _train_neural(cfg, table, device, use_bf16, on_epoch, checkpoint_dir, resume_from, should_stop) -> TrainResult:
    va_tab = table.select("val")
    restarting = int(cfg["restarts"]) > 1 and resume_from is None
    if restarting:
        val_data = SplitData(va_tab, device, fits_on_device(table, device))
        run, last_good, failure = _restart(cfg, table, device, use_bf16, val_data, va_tab, should_stop)
        run.start_epoch = len(run.history)
    else:
        run = _setup_run(cfg, table, device, use_bf16, resume_from)
        val_data = SplitData(va_tab, device, run.resident)
        last_good, failure = run.snapshot(run.start_epoch), ""
    n_freq, n_frames = table.shape

    def write_checkpoint(path) -> str:
        state = to_cpu_tree(last_good)
        state["config"] = dict(cfg)
        state["meta"] = {"preset": table.preset.name, "cache_key": str(table.cache_key),
                         "n_freq": int(n_freq), "n_frames": int(n_frames)}
        return str(save_checkpoint(path, state))

    status, reason = (TrialStatus.DIVERGED, failure) if failure else (TrialStatus.COMPLETE, "")
    epochs, every = int(cfg["epochs"]), int(cfg["checkpoint_every"])
    stop = False
    if restarting:  # the kept candidate's epochs, reported as if they had just been trained
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
        metrics, failure = _epoch(run, epoch, val_data, va_tab)
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


def _finish(run: _Run, table, status, reason, last_good, checkpoint_dir, write_checkpoint) -> TrainResult:
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
        final.update(evaluate(run.model, SplitData(te_tab, device, resident), te_tab.labels, run.cfg, "test/")[0])
    pred_all = predict_table(run.model, SplitData(table, device, resident), run.cfg)
    assignments = _assignments_from(table, pred_all["cluster"], pred_all["probs"])
    return TrainResult(status, epochs_done, final, run.history, reason, assignments, dict(run.cfg))
