"""The papers' Table I: one row per method, mean ± std over seeds on the TEST split, rendered
from a replication's MLflow runs (written by ``python -m study.replicate``; layout in
docs/ARCHITECTURE.md, "Replication over seeds"). This module reads MLflow only.

    python -m analysis.tables --replication NAME_OR_RUN_ID [--out DIR] [--tracking-uri URI]

writes ``table_one.md``, ``table_one.csv`` and ``seeds.csv`` (one row per child run: method,
seed, status, reason, test metrics) to ``--out`` (default ``reports/<replication name>``) and
prints the Markdown. Exit 2 when the replication is not found or has no child runs.

Columns: ``Method``, ``Repr.`` (the representation the clustering metrics are computed on:
``z`` latent mean, ``y`` categorical probabilities, ``x`` input features), ``Seeds`` (seeds
that completed / seeds run), ``ACC %``, ``NMI``, ``ARI``, ``Silhouette``, ``DBI``, ``CHI x1e3``.
Means and sample standard deviations (ddof=1; 0 for a single seed) over the completed
seeds; NaN values (a collapsed clustering) are left out of the mean and counted in a
footnote; seeds that failed, diverged or never finished are listed with their reason.

:func:`table_one` is pure (metric dicts in, DataFrame out); :func:`table_one_markdown`
formats it; :func:`load_replication` reads a replication's runs into its rows.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from analysis.runs import client
from study.tags import (KIND_REPLICATION, PARENT_RUN_TAG, REPLICATION_BASELINES_TAG, REPLICATION_FEATURES_TAG,
                        REPLICATION_METHOD_TAG, REPLICATION_MODEL_TAG, REPLICATION_NAME_TAG,
                        REPLICATION_REPRESENTATION_TAG, REPLICATION_SEED_TAG,
                        REPLICATION_SEEDS_TAG, REPLICATION_SOURCE_RUN_TAG, REPLICATION_SOURCE_RUNS_TAG,
                        REPLICATION_STATE_TAG, STUDY_CACHE_KEY_TAG, STUDY_KIND_TAG, TRIAL_REASON_TAG,
                        TRIAL_STATUS_TAG, StudyState)
from trainables.status import TrialStatus

# column label -> (metric family, scale, uses a representation suffix)
COLUMNS = [
    ("ACC %", "acc", 100.0, False),
    ("NMI", "nmi", 1.0, False),
    ("ARI", "ari", 1.0, False),
    ("Silhouette", "silhouette", 1.0, True),
    ("DBI", "dbi", 1.0, True),
    ("CHI x1e3", "chi", 1e-3, True),
]

DECIMALS = 2
# The representation each run reports is the tag REPRESENTATION_TAG, logged by study.replicate from
# the model class (trainables: ClusteringModel.reported_representation; baselines x); runs logged
# before the tag existed fall back on what their models reported then.
REPRESENTATION_TAG = REPLICATION_REPRESENTATION_TAG
DEFAULT_REPR = {"cat_uvac": "y", "uvac": "z", "kmeans": "x", "gmm": "x", "labels": "x"}


def pick_representation(metrics_list: Sequence[dict], model: str, split: str = "test",
                        wanted: Optional[str] = None) -> str:
    """The representation suffix for the clustering metrics of a row: ``wanted`` if given (the
    runs' :data:`REPRESENTATION_TAG`), else the default of a model logged before that tag
    (:data:`DEFAULT_REPR`: cat_uvac -> y, uvac -> z, baselines -> x), else the first one present
    in the metrics."""
    present = sorted({k.split("_")[-1] for m in metrics_list for k in m
                      if k.startswith(f"{split}/silhouette_")})
    for r in (wanted, DEFAULT_REPR.get(model)):
        if r and r in present:
            return r
    return present[0] if present else ""


def _stats(values: list[float]) -> tuple[float, float, int]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan, 0
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std, int(arr.size)


def table_one(rows: Sequence[dict], split: str = "test") -> pd.DataFrame:
    """``rows``: dicts with ``method`` (label), ``model`` (for the default representation),
    ``metrics`` (list of per-seed metric dicts of the seeds that completed), ``n_runs``
    (seeds attempted), optional ``representation`` and optional ``failures`` (one text per
    seed that did not complete, e.g. "seed 3 diverged: non-finite loss").

    Returns one row per method with numeric ``<col> mean`` / ``<col> std`` columns, ``n``
    columns per metric, the formatted ``<col>`` text "mean ± std" and ``Not completed``
    (the failures joined by "; ")."""
    out = []
    for r in rows:
        mets = list(r["metrics"])
        rep = pick_representation(mets, r.get("model", ""), split, r.get("representation"))
        row = {"Method": r["method"], "Repr.": rep, "Seeds": f"{len(mets)}/{r.get('n_runs', len(mets))}"}
        for label, fam, scale, has_rep in COLUMNS:
            key = f"{split}/{fam}_{rep}" if has_rep else f"{split}/{fam}"
            mean, std, n = _stats([m.get(key, math.nan) for m in mets])
            row[f"{label} mean"] = mean * scale if math.isfinite(mean) else math.nan
            row[f"{label} std"] = std * scale if math.isfinite(std) else math.nan
            row[f"{label} n"] = n
            row[label] = format_mean_std(row[f"{label} mean"], row[f"{label} std"], DECIMALS)
        row["Not completed"] = "; ".join(r.get("failures", []))
        out.append(row)
    return pd.DataFrame(out)


def format_mean_std(mean: float, std: float, dec: int = 2) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{dec}f} ± {std:.{dec}f}"


def table_one_markdown(df: pd.DataFrame, title: str = "") -> str:
    cols = ["Method", "Repr.", "Seeds"] + [c[0] for c in COLUMNS]
    lines = []
    if title:
        lines += [title, ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(COLUMNS)) + "|"]
    notes = []
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
        done = int(str(r["Seeds"]).split("/")[0])
        for label, *_ in COLUMNS:
            if r[f"{label} n"] < done:
                notes.append(f"{r['Method']}: {label} is NaN (collapsed clustering) for "
                             f"{done - r[f'{label} n']} seed(s), left out of the mean")
        if r.get("Not completed"):
            notes.append(f"{r['Method']}: not completed: {r['Not completed']}")
    lines.append("")
    lines.append("Mean ± sample std (ddof=1) over the seeds that completed, on the test split. "
                 "Repr.: representation of the silhouette / DBI / CHI (z latent mean, y categorical, "
                 "x input features).")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ a replication read from MLflow
MAX_REASON = 200


@dataclass
class Replication:
    """A replication's parent run (tags) and its child runs, as MLflow holds them."""
    name: str
    parent_run_id: str
    tags: dict
    children: list


def find_replication(name_or_id: str, tracking_uri: Optional[str] = None) -> Replication:
    """The replication whose parent run has this id, or the latest one named ``name_or_id``."""
    from mlflow.exceptions import MlflowException
    cl = client(tracking_uri)
    where = tracking_uri or "the default tracking URI"
    parent = None
    try:
        run = cl.get_run(name_or_id)
        parent = run if run.data.tags.get(STUDY_KIND_TAG) == KIND_REPLICATION else None
    except MlflowException:
        pass
    if parent is None:
        exps = [e.experiment_id for e in cl.search_experiments()]
        safe = name_or_id.replace("'", "\\'")
        found = cl.search_runs(exps, f"tags.`{REPLICATION_NAME_TAG}` = '{safe}' and tags.`{STUDY_KIND_TAG}` = "
                               f"'{KIND_REPLICATION}'", order_by=["attributes.start_time DESC"]) if exps else []
        if not found:
            raise LookupError(f"no replication named {name_or_id!r} nor with that parent run id "
                              f"(parent run tagged study.kind={KIND_REPLICATION}) at {where}")
        parent = found[0]
    pid = parent.info.run_id
    children = cl.search_runs([parent.info.experiment_id], f"tags.{PARENT_RUN_TAG} = '{pid}'",
                              max_results=50000)
    if not children:
        raise LookupError(f"replication {name_or_id!r} (run {pid}) has no child runs at {where}")
    return Replication(parent.data.tags.get(REPLICATION_NAME_TAG, parent.info.run_name), pid,
                       dict(parent.data.tags), children)


def _order(rep: Replication, tags: dict) -> tuple:
    """Chosen runs in the order given, then the baselines in theirs; seeds ascending."""
    sources = rep.tags.get(REPLICATION_SOURCE_RUNS_TAG, "").split(",")
    baselines = rep.tags.get(REPLICATION_BASELINES_TAG, "").split(",")
    src, model = tags.get(REPLICATION_SOURCE_RUN_TAG, ""), tags.get(REPLICATION_MODEL_TAG, "")
    group = (0, sources.index(src) if src in sources else len(sources)) if src else \
        (1, baselines.index(model) if model in baselines else len(baselines))
    return group + (int(tags.get(REPLICATION_SEED_TAG, -1)),)


def seeds_table(rep: Replication) -> pd.DataFrame:
    """One row per child run: method, model, source_run, seed, status, reason, run_id, test metrics."""
    rows = []
    for run in sorted(rep.children, key=lambda r: _order(rep, r.data.tags)):
        t = run.data.tags
        rows.append({"method": t.get(REPLICATION_METHOD_TAG, run.info.run_name),
                     "model": t.get(REPLICATION_MODEL_TAG, ""), "source_run": t.get(REPLICATION_SOURCE_RUN_TAG, ""),
                     "seed": int(t.get(REPLICATION_SEED_TAG, -1)), "status": t.get(TRIAL_STATUS_TAG, ""),
                     "reason": t.get(TRIAL_REASON_TAG, ""), "run_id": run.info.run_id,
                     **{k: float(v) for k, v in sorted(run.data.metrics.items()) if k.startswith("test/")}})
    return pd.DataFrame(rows)


def reported_representations(rep: Replication) -> dict[str, str]:
    """method -> the representation its runs were logged with (:data:`REPRESENTATION_TAG`)."""
    return {run.data.tags.get(REPLICATION_METHOD_TAG, run.info.run_name): run.data.tags[REPRESENTATION_TAG]
            for run in rep.children if run.data.tags.get(REPRESENTATION_TAG)}


def table_rows(seeds: pd.DataFrame) -> list[dict]:
    """:func:`table_one` rows from :func:`seeds_table`, one per method in first-seen order."""
    metric_cols = [c for c in seeds.columns if c.startswith("test/")]
    rows: dict[str, dict] = {}
    for _, r in seeds.iterrows():
        entry = rows.setdefault(r["method"], {"method": r["method"], "model": r["model"], "metrics": [],
                                              "n_runs": 0, "failures": []})
        entry["n_runs"] += 1
        if r["status"] == TrialStatus.COMPLETE:
            entry["metrics"].append({c: float(r[c]) for c in metric_cols if pd.notna(r[c])})
        else:
            reason = str(r["reason"] or "")[:MAX_REASON]
            entry["failures"].append(f"seed {r['seed']} {r['status'] or 'unknown'}" + (f": {reason}" if reason else ""))
    return list(rows.values())


@dataclass
class RenderedTable:
    replication: Replication
    table: pd.DataFrame
    seeds: pd.DataFrame
    markdown: str
    files: dict


def render_replication(name_or_id: str, tracking_uri: Optional[str] = None,
                       out_dir: Optional[Path] = None) -> RenderedTable:
    """Table I of a replication, written as table_one.md / table_one.csv / seeds.csv."""
    rep = find_replication(name_or_id, tracking_uri)
    seeds = seeds_table(rep)
    reported = reported_representations(rep)
    table = table_one([{**row, "representation": reported.get(row["method"])} for row in table_rows(seeds)])
    t = rep.tags
    title = (f"Table I: test split of {Path(t.get(REPLICATION_FEATURES_TAG, '?')).name}, "
             f"{t.get(REPLICATION_SEEDS_TAG, '?')} seed(s) (cache {t.get(STUDY_CACHE_KEY_TAG, '')[:12]}), "
             f"replication {rep.name}")
    state = t.get(REPLICATION_STATE_TAG, "")
    if state != StudyState.FINISHED:
        title += f" [replication {state or 'state unknown'}]"
    md = table_one_markdown(table, title)
    out = Path(out_dir or Path("reports", rep.name))
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "table_one.md", "csv": out / "table_one.csv", "seeds": out / "seeds.csv"}
    files["markdown"].write_text(md, encoding="utf-8")
    table.to_csv(files["csv"], index=False)
    seeds.to_csv(files["seeds"], index=False)
    return RenderedTable(rep, table, seeds, md, files)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.tables",
                                description="Table I (mean ± std over seeds) of a replication in MLflow.")
    p.add_argument("--replication", required=True, metavar="NAME_OR_RUN_ID",
                   help="the replication's name or parent run id (python -m study.replicate)")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--out", help="output directory (default reports/<replication name>)")
    a = p.parse_args(argv)
    from mlflow.exceptions import MlflowException
    try:
        res = render_replication(a.replication, a.tracking_uri, a.out)
    except (LookupError, MlflowException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(res.markdown)
    print(f"written: {res.files['markdown'].parent.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
