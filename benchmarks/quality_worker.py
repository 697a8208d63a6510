"""The worker side of ``benchmarks.quality``: one :class:`~benchmarks.quality_runs.Job` trained or
fitted in a worker process (one torch thread) on its cache's table, loaded once per process."""
from __future__ import annotations

import math
import time
from typing import Any

from benchmarks.quality_runs import Job, resolved_config
from trainables.status import TrialStatus

__all__ = ["run_job"]

_TABLES: dict[tuple[str, str, int, int], Any] = {}


def _table(cache_dir: str, split: str, voices: int = 0, val_fold: int = 0):
    """The cache's table with ``split`` as its train/val/test split (loaded once per process;
    ``voices``: a candidate's voice count, 0 for the front end's; ``val_fold``: the job's validation fold)."""
    key = (cache_dir, split, voices, val_fold)
    if key not in _TABLES:
        from features.cache import load_table

        _TABLES[key] = load_table(cache_dir, split_scheme=split, voices=voices, val_fold=val_fold)
    return _TABLES[key]


def _suite(job: Job, caches: dict[str, str]) -> list[dict]:
    """The classical suite on the job's split: its own-table baselines on every model front end,
    the pipeline baselines on the reference front ends (rows matched by id)."""
    import warnings

    from features.voice import VoiceError
    from trainables.baseline_suite import (OWN_BASELINES, REFERENCE_PRESETS, align_to, get_voices, own_name,
                                           run_references, run_suite)

    model_frontends = [f for f in job.config["frontends"]]
    fold = int(job.config.get("val_fold", 0))
    main = _table(caches[model_frontends[0]], job.split, val_fold=fold)
    refs = {p: align_to(_table(caches[p], job.split), main) for p in REFERENCE_PRESETS if p in caches}
    results = run_suite(main, refs, seeds=[job.seed])
    for f in model_frontends[1:]:
        extra = [r for r in run_suite(_table(caches[f], job.split, val_fold=fold), None, seeds=[job.seed])
                 if r.name in OWN_BASELINES]
        for r in extra:
            r.name = own_name(f, r.name)
        results += extra
    voiced = {p: own for p in REFERENCE_PRESETS if p in caches and (own := get_voices(p))}
    for count in job.config.get("voices", ()):  # the candidates' voice counts: the voice baselines at each
        try:
            tables = {p: align_to(_table(caches[p], job.split, int(count)), main) for p, own in voiced.items()
                      if count != own}
        except VoiceError as exc:  # too many voices for the clips: the candidate's own run fails the same way
            warnings.warn(f"baseline suite: no voice baselines with {count} voices: {exc}", stacklevel=2)
            continue
        results += run_references(tables, len(main.classes), seeds=[job.seed])
    return [{"name": r.name, "label": r.label, "side_information": r.side_information, "metrics": r.metrics}
            for r in results]


def run_job(job: Job, caches: dict[str, str]) -> dict:
    """Train / fit one job; returns status, test metrics and the per-epoch validation accuracy."""
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    try:
        if job.kind == "suite":
            return {"status": TrialStatus.COMPLETE, "rows": _suite(job, caches), "metrics": {}, "val_acc": [],
                    "time_s": time.time() - t0}
        table = _table(caches[job.frontend], job.split, int(job.config.get("voices", 0)),
                       int(job.config.get("val_fold", 0)))
        if job.kind == "labels":
            from trainables.baselines import run_baseline

            out = run_baseline("labels", table, len(table.classes), job.seed)
            return {"status": TrialStatus.COMPLETE, "metrics": dict(out.metrics), "val_acc": [],
                    "time_s": time.time() - t0}
        from trainables.loop import train

        resolved = resolved_config(job)
        res = train(job.training_config(), table)
        val_acc = [h.get("val/acc", math.nan) for h in res.history]
        return {"status": res.status, "reason": res.reason, "metrics": dict(res.metrics), "val_acc": val_acc,
                "time_s": time.time() - t0, "resolved": resolved}
    except Exception as exc:  # a failing run is a row of the table, not a crash of the benchmark
        return {"status": TrialStatus.FAILED, "reason": f"{type(exc).__name__}: {exc}", "metrics": {}, "val_acc": [],
                "time_s": time.time() - t0}
