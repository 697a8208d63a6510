"""The Ray Tune function trainable: one trial = ``trainables.loop.train`` on one config.

The trial config is the training config and nothing else (the searched parameters over the
study's fixed config). The feature caches reach the trial outside the config, through
``tune.with_parameters`` (:func:`make_trainable`): one per front end the study trains on, the
trial's picked by its ``frontend`` key (:func:`cache_for`); it is loaded once per worker process
(:func:`_table`, memory-mapped, so concurrent trials on one node share the page cache).

The worker resolves the config once (:func:`trainables.config.resolve_config` with the
table's dataset) and trains on exactly that; the first report of every worker session
carries it as JSON under :data:`RESOLVED_KEY`, which is what the study logs to MLflow as the
trial's params (not a recomputation on the driver, which can differ when a default depends on
the dataset, e.g. ``lam``).

Every checkpoint directory has the same layout::

    checkpoint/          what loop's checkpoint_fn wrote (resume_from points here)
    assignments.parquet  final report only: clip id, split, label, cluster (trainables.train.write_assignments)
    config.json          final report only: the resolved trial config

The last report of a trial that ran to its end carries ``trial_status`` (complete |
diverged) and ``trial_reason``; a trial stopped by the scheduler has no such report, which
is how the study tells "pruned" from "complete" (see :func:`study.objectives.classify`).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from pathlib import Path

from study.objectives import FINAL_KEY, REASON_KEY, WARMUP_KEY  # report keys read by classify, the schedulers
from trainables.status import TrialStatus

log = logging.getLogger(__name__)

RESOLVED_KEY = "resolved_config"  # JSON of the config the worker trains with (first report)


@functools.lru_cache(maxsize=1)  # one table per worker process at a time
def _table(cache_dir: str, split_scheme: str, voices: int = 0, val_fold: int = 0):
    from features.cache import load_table

    return load_table(cache_dir, split_scheme=split_scheme, voices=voices, val_fold=val_fold)


def _scalars(metrics: dict) -> dict:
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, (int, float)):
            out[k] = v
        elif hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            out[k] = v.item()
    return out


def make_trainable(cache_dirs, *, cpus: float, gpus: float):
    """The trainable the Tuner runs: the feature caches (front end name -> cache directory; a
    single directory is the one front end) bound by ``tune.with_parameters``, resources set."""
    from ray import tune

    if not isinstance(cache_dirs, dict):
        cache_dirs = {"": str(cache_dirs)}
    bound = tune.with_parameters(trainable, cache_dirs={str(k): str(v) for k, v in cache_dirs.items()})
    return tune.with_resources(bound, {"cpu": cpus, "gpu": gpus})


def cache_for(config: dict, cache_dirs: dict) -> str:
    """The cache of the trial's front end (config ``frontend``), or the only one."""
    name = str(config.get("frontend") or "")
    if name in cache_dirs:
        return cache_dirs[name]
    if not name and len(cache_dirs) == 1:
        return next(iter(cache_dirs.values()))
    raise ValueError(f"frontend {name!r}: the study has no feature cache for it (it has "
                     f"{', '.join(k or '(unnamed)' for k in cache_dirs)})")


def _resume_dir() -> str | None:
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    local = ckpt.to_directory()
    inner = Path(local) / "checkpoint"
    return str(inner if inner.exists() else local)


def trainable(config: dict, cache_dirs: dict) -> None:
    """Train one trial; reports every epoch to Tune, with a checkpoint every ``checkpoint_every``.

    An exception of the trial's own (a config the worker cannot train, a device it lacks) is
    reported as the trial's end, ``trial_status=failed`` with the exception as the reason: Ray
    then neither retries it as a lost worker nor calls it one. A worker that dies (node lost,
    killed) raises nothing here and is retried from its checkpoint (``--max-failures``)."""
    from ray import tune
    from ray.exceptions import RayError

    try:
        _train_trial(config, cache_dirs)
    except RayError:
        raise
    except Exception as exc:
        log.exception("trial failed")
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        tune.report({FINAL_KEY: TrialStatus.FAILED, REASON_KEY: reason[:2000], "epoch": 0,
                     RESOLVED_KEY: json.dumps(config, sort_keys=True, default=str)})


def _train_trial(config: dict, cache_dirs: dict) -> None:
    from ray import tune
    from ray.tune import Checkpoint

    from trainables import loop
    from trainables.config import resolve_config
    from trainables.models import warmup_epochs
    from trainables.train import write_assignments

    table = _table(cache_for(config, cache_dirs), str(config.get("split_scheme") or "random"),
                   int(config.get("voices", 0)), int(config.get("val_fold", 0)))
    cfg = resolve_config(config, dataset=table.dataset, preset=table.preset)
    warmup = warmup_epochs(cfg)
    every = int(cfg.get("checkpoint_every", 1) or 0)
    last_fn: list = [None]
    first = [True]

    def on_epoch(epoch: int, metrics: dict, checkpoint_fn=None) -> None:
        last_fn[0] = checkpoint_fn
        payload = {**_scalars(metrics), "epoch": int(epoch), WARMUP_KEY: warmup}
        if first[0]:
            payload[RESOLVED_KEY] = json.dumps(cfg, sort_keys=True, default=str)
            first[0] = False
        if checkpoint_fn is not None and every > 0 and epoch % every == 0:
            with tempfile.TemporaryDirectory() as d:
                checkpoint_fn(os.path.join(d, "checkpoint"))
                tune.report(payload, checkpoint=Checkpoint.from_directory(d))
        else:
            tune.report(payload)

    result = loop.train(cfg, table, on_epoch=on_epoch, resume_from=_resume_dir())

    status = result.status if result.status in (TrialStatus.COMPLETE, TrialStatus.DIVERGED) else TrialStatus.PRUNED
    final = {**_scalars(result.metrics), "epoch": int(result.epochs_done),
             FINAL_KEY: status, REASON_KEY: str(result.reason or "")}
    if first[0]:  # baselines report once: the resolved config rides on the final report
        final[RESOLVED_KEY] = json.dumps(result.config, sort_keys=True, default=str)
    with tempfile.TemporaryDirectory() as d:
        if last_fn[0] is not None:
            try:
                last_fn[0](os.path.join(d, "checkpoint"))
            except Exception:  # a diverged model may not be worth keeping; the report still goes out
                pass
        if result.assignments is not None:
            write_assignments(result.assignments, Path(d) / "assignments.parquet")
        Path(d, "config.json").write_text(json.dumps(result.config, indent=2, sort_keys=True, default=str))
        tune.report(final, checkpoint=Checkpoint.from_directory(d))
