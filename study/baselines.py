"""The classical baselines of a study: fitted once at setup on the study's split, logged on its
MLflow parent run, and compared with the Pareto trials at the end (trainables.baseline_suite).

Rows are plain dicts (JSON in the Optuna study's user attrs, so ``--resume`` has them)::

    {"name": "awe_gmm", "label": "...", "preset": "awe", "side_information": False, "seeds": "0",
     "val/acc": 0.57, "test/acc": 0.61, "val/nmi": ..., ...}

Fitted with the seeds the trials train from (:func:`trial_seeds`: seed 0, or with ``--set
replicas=3`` the three replicas' seeds, the metrics then their means).

On the parent run: metrics ``baseline/<name>_<split>_<metric>`` (acc, nmi, ari; val and test) and
tags ``baseline.strongest`` (highest val/acc without side information) and
``baseline.strongest_with_speaker_ids`` (highest val/acc of those that use speaker ids, where any does).
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

from study.tags import STRONGEST_TAG, STRONGEST_WITH_SPEAKER_IDS_TAG, baseline_metric_name

__all__ = ["trial_seeds", "study_baselines", "suite_rows", "baseline_metrics", "baseline_tags", "strongest_row",
           "margin_lines"]

_METRICS = ("acc", "nmi", "ari")


def trial_seeds(fixed: Mapping[str, object]) -> list[int]:
    """The seeds every trial trains from, given the study's fixed config: its ``seed`` (default 0)
    and, with ``replicas`` R > 1, the replicas' seeds (trainables.replicas): the seeds the
    baselines are fitted with, so that a trial's mean over its replicas meets a baseline's mean
    over the same seeds."""
    from trainables.replicas import replica_seed

    seed, replicas = int(fixed.get("seed") or 0), max(1, int(fixed.get("replicas") or 1))
    return [replica_seed(seed, r) for r in range(replicas)]


def study_baselines(tables: Mapping[str, object], main: str, cache_dir: str, n_clusters: int,
                    seeds: Sequence[int] = (0,)) -> list[dict]:
    """The suite on every front end the study trains on (``tables``: preset name -> table, the same
    clips and split) and on the reference front ends of the clips of ``cache_dir``, each baseline
    fitted once per seed of ``seeds`` (:func:`trial_seeds`; the rows hold the means)."""
    from trainables.baseline_suite import OWN_BASELINES, own_name, reference_tables, run_suite

    seeds = [int(s) for s in seeds]
    main_table = tables[main]
    results = run_suite(main_table, reference_tables(cache_dir, main_table), n_clusters, seeds=seeds)
    for name, table in tables.items():  # the other front ends searched: their own-table baselines
        if name == main:
            continue
        results += [r for r in run_suite(table, None, n_clusters, seeds=seeds) if r.name in OWN_BASELINES]
        for r in results[-len(OWN_BASELINES):]:
            r.name = own_name(name, r.name)
    return suite_rows(results, seeds)


def suite_rows(results, seeds: Sequence[int] = (0,)) -> list[dict]:
    """The rows (module docstring) of :class:`trainables.baseline_suite.SuiteResult` s fitted with
    ``seeds`` (recorded in each row as ``seeds``, comma separated)."""
    rows = []
    for r in results:
        row = {"name": r.name, "label": r.label, "preset": r.preset, "side_information": bool(r.side_information),
               "seeds": ",".join(str(int(s)) for s in seeds)}
        row.update({f"{s}/{m}": r.value(f"{s}/{m}") for s in ("val", "test") for m in _METRICS
                    if math.isfinite(r.value(f"{s}/{m}"))})
        rows.append(row)
    return rows


def strongest_row(rows: list[dict], *, side_information: bool = False) -> Optional[dict]:
    """The row with the highest val/acc among the baselines without side information, or
    (``side_information``) among those that use speaker ids (the same normalisation as a model on
    speaker-normalised features)."""
    from trainables.baseline_suite import strongest_name

    name = strongest_name(((r["name"], r.get("val/acc"), r["side_information"]) for r in rows),
                          side_information=side_information)
    return next((r for r in rows if r["name"] == name), None)


def baseline_metrics(rows: list[dict]) -> dict[str, float]:
    """Flat ``baseline/<name>_<split>_<metric>`` values of ``rows`` (the parent run's metrics)."""
    return {baseline_metric_name(r["name"], *k.split("/", 1)): float(v) for r in rows for k, v in r.items()
            if "/" in k and isinstance(v, (int, float))}


def baseline_tags(rows: list[dict]) -> dict[str, str]:
    tags = {}
    best = strongest_row(rows)
    if best is not None:
        tags[STRONGEST_TAG] = best["name"]
    side = strongest_row(rows, side_information=True)
    if side is not None:
        tags[STRONGEST_WITH_SPEAKER_IDS_TAG] = side["name"]
    return tags


def margin_lines(rows: list[dict], pareto: list[dict]) -> list[str]:
    """The baselines, the strongest named, and each Pareto trial's margin over it (val and test acc):
    over the strongest with speaker ids for a trial on a front end that uses them (:func:`_reference`)."""
    if not rows:
        return []
    best, side = strongest_row(rows), strongest_row(rows, side_information=True)
    seeds = str(rows[0].get("seeds", "0")).split(",")
    fitted = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean of seeds {', '.join(seeds)}, the trials' replicas"
    lines = [f"Classical baselines on the same split ({fitted}; a trial beats the baseline only if it beats the "
             "strongest):"]
    for r in rows:
        mark = ""
        if best is not None and r["name"] == best["name"]:
            mark = "  <- strongest"
        elif side is not None and r["name"] == side["name"]:
            mark = "  <- strongest with speaker ids (side information)"
        lines.append(f"  {r['name']:<24} val/acc {r.get('val/acc', float('nan')):.4f}  test/acc "
                     f"{r.get('test/acc', float('nan')):.4f}  {r['label']}{mark}")
    if best is None or not any("val/acc" in p["values"] for p in pareto):
        return lines
    beat, below = [], []
    for p in pareto:
        ref = _reference(p, rows, best, side)
        v = p["values"].get("val/acc")
        t = (p.get("test") or {}).get("test/acc")
        mv = f"{100 * (v - ref['val/acc']):+.1f}" if v is not None else "-"
        mt = f"{100 * (t - ref['test/acc']):+.1f}" if t is not None and "test/acc" in ref else "-"
        lines.append(f"  trial {p['number']:>3} vs {ref['name']}: val/acc {mv} points, test/acc {mt} points")
        if v is not None and v > ref["val/acc"]:
            beat.append(p["number"])
        elif v is not None:
            below.append((ref["val/acc"] - v, ref["name"]))
    if beat:
        lines.append(f"  Pareto trials above the strongest baseline on val/acc: {', '.join(map(str, beat))}")
        return lines
    gap, name = min(below) if below else (None, best["name"])
    gap_text = f", the best Pareto trial by {100 * gap:.1f} points" if gap is not None else ""
    lines.append(f"  no Pareto trial beats the strongest baseline ({name}) on val/acc{gap_text}: at this "
                 "budget the models stay below the classical pipeline (longer studies: --epochs, --num-samples; "
                 "README, 'Quality on real speech', for what the models reach on real speech)")
    return lines


def _reference(trial: dict, rows: list[dict], best: dict, side: Optional[dict]) -> dict:
    """The baseline a Pareto trial is measured against: the strongest with speaker ids when the
    trial's front end uses them (per-speaker normalisation, like those baselines), else the strongest.
    The trial's front end: its ``frontend`` param, else the study's own (the preset of its own-table
    ``kmeans`` row)."""
    front = trial.get("params", {}).get("frontend") or next((r["preset"] for r in rows if r["name"] == "kmeans"),
                                                             None)
    uses_ids = any(r.get("preset") == front and r["side_information"] for r in rows)
    return side if uses_ids and side is not None else best
