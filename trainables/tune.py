"""The Ray Tune function trainable wrapping ``trainables.loop.train``.

The config is the only input: the trainable strips the study's bookkeeping keys
(``STUDY_KEYS``), loads the feature table once per worker process from
``config["features"]`` (a cache directory), and calls ``loop.train`` with an
``on_epoch`` that reports every epoch to Tune and attaches a checkpoint every
``checkpoint_every`` epochs. When Tune hands back a checkpoint (a retried trial or a
resumed study), training resumes from it instead of starting over.

Every checkpoint directory has the same layout::

    checkpoint/          what loop's checkpoint_fn wrote (resume_from points here)
    assignments.parquet  final report only: clip id, split, label, cluster
    config.json          final report only: the resolved trial config

The last report of a trial that ran to its end carries ``trial_status`` (complete |
diverged) and ``trial_reason``; a trial stopped by the scheduler has no such report,
which is how the study tells "pruned" from "complete" (see study.objectives).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

# Keys the study adds to a trial config that are not training config.
STUDY_KEYS = ("features", "study_trial")
FINAL_KEY = "trial_status"
REASON_KEY = "trial_reason"

_TABLES: dict[tuple, Any] = {}


def _load_table(config: dict):
    from features.cache import load_table

    key = (str(config["features"]), str(config.get("split_scheme", "")))
    if key not in _TABLES:
        kwargs = {}
        if config.get("split_scheme"):
            kwargs["split_scheme"] = config["split_scheme"]
        _TABLES.clear()  # one table per worker at a time
        _TABLES[key] = load_table(config["features"], **kwargs)
    return _TABLES[key]


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


def write_assignments(assignments: Any, path: Path) -> None:
    import pandas as pd

    if assignments is None:
        return
    if isinstance(assignments, pd.DataFrame):
        df = assignments
    else:
        df = pd.DataFrame(assignments)
    df.to_parquet(path, index=False)


def train_config(config: dict) -> dict:
    """The training config of a trial: the study's bookkeeping keys removed."""
    return {k: v for k, v in config.items() if k not in STUDY_KEYS}


def trainable(config: dict) -> None:
    from ray import tune
    from ray.tune import Checkpoint

    from trainables import loop

    cfg = train_config(config)
    table = _load_table(config)
    every = int(cfg.get("checkpoint_every", 1) or 0)

    resume_dir = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        local = ckpt.to_directory()
        inner = Path(local) / "checkpoint"
        resume_dir = str(inner if inner.exists() else local)

    last_fn: list = [None]

    def on_epoch(epoch: int, metrics: dict, checkpoint_fn=None) -> None:
        last_fn[0] = checkpoint_fn
        payload = {**_scalars(metrics), "epoch": int(epoch)}
        if checkpoint_fn is not None and every > 0 and epoch % every == 0:
            with tempfile.TemporaryDirectory() as d:
                checkpoint_fn(os.path.join(d, "checkpoint"))
                tune.report(payload, checkpoint=Checkpoint.from_directory(d))
        else:
            tune.report(payload)

    result = loop.train(cfg, table, on_epoch=on_epoch, resume_from=resume_dir)

    status = {"complete": "complete", "diverged": "diverged"}.get(result.status, "pruned")
    final = {**_scalars(result.metrics), "epoch": int(result.epochs_done),
             FINAL_KEY: status, REASON_KEY: str(result.reason or "")}
    with tempfile.TemporaryDirectory() as d:
        if last_fn[0] is not None:
            try:
                last_fn[0](os.path.join(d, "checkpoint"))
            except Exception:  # a diverged model may not be worth keeping; still report
                pass
        write_assignments(result.assignments, Path(d) / "assignments.parquet")
        Path(d, "config.json").write_text(json.dumps(result.config, indent=2, sort_keys=True, default=str))
        tune.report(final, checkpoint=Checkpoint.from_directory(d))
