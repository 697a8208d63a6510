"""``python -m analysis.report --study NAME [--study NAME2 ...]``: Pareto views of studies.

Reads the studies from MLflow (analysis.runs), and for each study:

* the Pareto front of its completed trials on the objectives (``--objective`` or the
  parent's ``study.objectives`` tag), on the VALIDATION metrics;
* the hypervolume after each completed trial (completion order; one reference point per
  set of objectives, from all the studies' completed trials, see analysis.pareto);
* the parameter importance per objective (analysis.importance);

then writes to ``--out`` (default ``reports/<first study>``):

* ``pareto_silhouette.png``, ``pareto_dbi.png``, ``pareto_chi.png``: each clustering metric
  against val/acc and val/nmi, every study with its own front;
* ``hypervolume.png``, ``importance.png``;
* ``report.html``: one self-contained interactive page (plotly.js inline);
* ``pareto_runs.csv`` and ``pareto_runs.md``: the Pareto-optimal runs with their
  validation objectives, their params and their TEST metrics;
* ``summary.json``;

logs these files as artifacts of each study's parent run (under ``pareto_report/``) and
tags every child run ``pareto=true|false`` (filter ``tags.pareto = 'true'`` in the UI).

``build_report`` does the work; ``compute_report`` is the pure part (no I/O).
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from analysis import figures
from analysis.importance import importance_table
from analysis.pareto import hypervolume, hypervolume_history, pareto_front, reference_point
from analysis.runs import (completed, default_direction, fmt, load_runs, objective_matrix,
                           parse_objectives)

log = logging.getLogger(__name__)

ARTIFACT_DIR = "pareto_report"
FAMILIES = ("silhouette", "dbi", "chi")
SUPERVISED = ("val/acc", "val/nmi")


@dataclass
class StudyReport:
    study: str
    objectives: list            # [(metric, dir)]
    run_ids: list               # completed runs, completion order
    front_run_ids: list         # Pareto-optimal run ids
    reference: list             # hypervolume reference point (original units)
    hypervolume: float
    hypervolume_history: list   # after each completed trial
    importance: pd.DataFrame
    importance_notes: dict
    n_runs: int                 # all child runs
    n_completed: int


@dataclass
class ReportResult:
    studies: dict                          # name -> StudyReport
    pareto_table: pd.DataFrame
    files: dict = field(default_factory=dict)
    out_dir: Optional[Path] = None


# ------------------------------------------------------------------------ computing
def _objective_label(objs) -> str:
    return ",".join(f"{m}:{d}" for m, d in objs)


def compute_report(table: pd.DataFrame, objectives_by_study: dict[str, list],
                   importance_kw: Optional[dict] = None) -> dict[str, StudyReport]:
    """Fronts, hypervolume histories and importances of each study in ``table``."""
    out = {}
    # one reference point per objective set, from every study that uses it
    refs = {}
    for study, objs in objectives_by_study.items():
        done = completed(table[table["study"] == study])
        vals = objective_matrix(done, objs)
        key = _objective_label(objs)
        refs.setdefault(key, []).append(vals)
    ref_points = {}
    for key, mats in refs.items():
        allv = np.concatenate(mats, axis=0)
        objs = parse_objectives(key)
        ok = np.isfinite(allv).all(axis=1) if allv.size else np.zeros(0, bool)
        ref_points[key] = reference_point(allv, [d for _, d in objs]) if ok.any() else None

    for study, objs in objectives_by_study.items():
        sub = table[table["study"] == study]
        done = completed(sub)
        dirs = [d for _, d in objs]
        vals = objective_matrix(done, objs)
        mask = pareto_front(vals, dirs) if len(done) else np.zeros(0, bool)
        ref = ref_points[_objective_label(objs)]
        if ref is not None:
            hist = hypervolume_history(vals, dirs, ref)
            hv = hypervolume(vals[mask], dirs, ref)
        else:
            hist, hv = np.zeros(len(done)), 0.0
        imp, notes = importance_table(sub, objs, **(importance_kw or {}))
        out[study] = StudyReport(
            study=study, objectives=list(objs), run_ids=done["run_id"].tolist(),
            front_run_ids=done["run_id"][mask].tolist(),
            reference=[float(x) for x in ref] if ref is not None else [],
            hypervolume=float(hv), hypervolume_history=[float(x) for x in hist],
            importance=imp, importance_notes=notes, n_runs=len(sub), n_completed=len(done))
    return out


def family_metrics(table: pd.DataFrame, family: str) -> list[str]:
    """Validation metrics of a family present with a finite value in completed runs
    (e.g. ``val/silhouette_y``, ``val/silhouette_z``)."""
    done = completed(table)
    pat = re.compile(rf"^metrics\.val/{family}(_\w+)?$")
    cols = [c for c in done.columns if pat.match(c) and np.isfinite(done[c].astype(float)).any()]
    return sorted(c[len("metrics."):] for c in cols)


def panels_for(table: pd.DataFrame, reports: dict[str, StudyReport], family: str) -> list[dict]:
    """Scatter panels (clustering metric of ``family`` vs ACC and NMI), every study with its
    own 2-D front for the pair and its own front on its objectives."""
    panels = []
    for ym in family_metrics(table, family):
        for xm in SUPERVISED:
            if f"metrics.{xm}" not in table:
                continue
            dirs = (default_direction(xm), default_direction(ym))
            series = []
            for study, rep in reports.items():
                done = completed(table[table["study"] == study])
                vals = objective_matrix(done, [(xm, dirs[0]), (ym, dirs[1])])
                series.append({"study": study, "x": vals[:, 0], "y": vals[:, 1], "index": list(done.index),
                               "front": pareto_front(vals, list(dirs)) if len(done) else np.zeros(0, bool),
                               "pareto": done["run_id"].isin(rep.front_run_ids).to_numpy()})
            panels.append({"x": xm, "y": ym, "dirs": dirs, "series": series})
    return panels


def pareto_table(table: pd.DataFrame, reports: dict[str, StudyReport]) -> pd.DataFrame:
    """The Pareto-optimal runs: ids, validation objectives, varying params, test metrics."""
    rows = []
    test_pat = re.compile(r"^metrics\.test/(acc|nmi|ari|silhouette|dbi|chi)(_\w+)?$")
    for study, rep in reports.items():
        sub = table[(table["study"] == study) & table["run_id"].isin(rep.front_run_ids)]
        all_sub = completed(table[table["study"] == study])
        varying = [c for c in all_sub.columns if c.startswith("params.")
                   and all_sub[c].astype(str).nunique() > 1]
        tests = [c for c in sub.columns if test_pat.match(c)]
        for _, r in sub.iterrows():
            row = {"study": study, "space": r.get("space", ""), "run_id": r["run_id"],
                   "trial": int(r["trial_number"])}
            for m, d in rep.objectives:
                row[f"{m} ({d})"] = r.get(f"metrics.{m}", np.nan)
            for c in varying:
                row[c[len("params."):]] = r[c]
            for c in tests:
                row[c[len("metrics."):]] = r[c]
            rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["study", "trial"]).reset_index(drop=True)
    return df


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "(no Pareto-optimal run: no completed trial with finite objectives)\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(r[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ writing
def write_outputs(table: pd.DataFrame, reports: dict[str, StudyReport], out_dir: Path) -> tuple[dict, pd.DataFrame]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    all_panels = []
    for fam in FAMILIES:
        panels = panels_for(table, reports, fam)
        all_panels += panels
        p = figures.scatter_grid_png(panels, out_dir / f"pareto_{fam}.png",
                                     title=f"{fam} vs accuracy / NMI (validation): dots = completed trials, "
                                           "line = 2-D front per study, ring = study's Pareto front")
        if p:
            files[f"pareto_{fam}"] = p
    histories = {s: np.asarray(r.hypervolume_history) for s, r in reports.items()}
    labels = {s: _objective_label(r.objectives) for s, r in reports.items()}
    files["hypervolume"] = figures.hypervolume_png(histories, out_dir / "hypervolume.png", labels)
    files["importance"] = figures.importance_png({s: r.importance for s, r in reports.items()},
                                                 {s: r.importance_notes for s, r in reports.items()},
                                                 out_dir / "importance.png")
    ptable = pareto_table(table, reports)
    ptable.to_csv(out_dir / "pareto_runs.csv", index=False)
    files["csv"] = out_dir / "pareto_runs.csv"
    (out_dir / "pareto_runs.md").write_text(to_markdown(ptable), encoding="utf-8")
    files["markdown"] = out_dir / "pareto_runs.md"
    done = completed(table)
    files["html"] = figures.interactive_html(done, all_panels, histories, ptable, out_dir / "report.html",
                                             title="Pareto report: " + ", ".join(reports))
    summary = {s: {"objectives": labels[s], "runs": r.n_runs, "completed": r.n_completed,
                   "pareto_run_ids": r.front_run_ids, "hypervolume": r.hypervolume,
                   "reference_point": r.reference, "hypervolume_history": r.hypervolume_history,
                   "importance": {m: {k: float(v) for k, v in r.importance[m].dropna().items()}
                                  for m in r.importance.columns},
                   "importance_notes": r.importance_notes}
               for s, r in reports.items()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    files["summary"] = out_dir / "summary.json"
    return files, ptable


def log_to_mlflow(table: pd.DataFrame, reports: dict[str, StudyReport], studies: dict, out_dir: Path,
                  tracking_uri: Optional[str]) -> None:
    from analysis.runs import client
    cl = client(tracking_uri)
    for name, rep in reports.items():
        info = studies[name]
        front = set(rep.front_run_ids)
        for rid in table.loc[table["study"] == name, "run_id"]:
            cl.set_tag(rid, "pareto", "true" if rid in front else "false")
        cl.set_tag(info.parent_run_id, "pareto.objectives", _objective_label(rep.objectives))
        cl.set_tag(info.parent_run_id, "pareto.n_runs", str(len(front)))
        cl.set_tag(info.parent_run_id, "pareto.run_ids", ",".join(rep.front_run_ids)[:5000])
        cl.log_artifacts(info.parent_run_id, str(out_dir), ARTIFACT_DIR)


def valid_metrics(table: pd.DataFrame, infos: dict) -> set[str]:
    """The metric names an objective may use: what the studies' models report
    (trainables.metric_names, by each run's ``model`` param and each study's space) and
    every metric present in their runs."""
    from trainables.metric_names import REPRESENTATIONS, declared_metrics
    models = set()
    if "params.model" in table:
        models |= {str(m) for m in table["params.model"].dropna().unique()}
    models |= {info.space for info in infos.values() if info.space}
    names = {c[len("metrics."):] for c in table.columns if c.startswith("metrics.")}
    for m in models & set(REPRESENTATIONS):
        names |= set(declared_metrics(m))
    return names


def check_objectives(objectives: Sequence[str], table: pd.DataFrame, infos: dict) -> list:
    """Parsed ``--objective`` items, each a metric the studies report (else ValueError)."""
    from study.objectives import parse_objectives as parse_checked
    scope = ("in study " if len(infos) == 1 else "in studies ") + ", ".join(infos)
    return [(o.metric, o.mode) for o in parse_checked(list(objectives), valid_metrics(table, infos), scope=scope)]


def build_report(studies: Sequence[str], *, tracking_uri: Optional[str] = None,
                 objectives: Optional[Sequence[str]] = None, out_dir: Optional[Path] = None,
                 log_mlflow: bool = True, importance_kw: Optional[dict] = None) -> ReportResult:
    if not studies:
        raise ValueError("give at least one --study")
    table, infos = load_runs(studies, tracking_uri)
    # --objective is checked before anything is written (files, tags, artifacts)
    given = check_objectives(objectives, table, infos) if objectives else None
    objs_by_study = {}
    for name, info in infos.items():
        objs = given if given else info.objectives
        if not objs:
            raise ValueError(f"study {name!r} has no study.objectives tag: pass --objective METRIC:max|min")
        objs_by_study[name] = objs
    reports = compute_report(table, objs_by_study, importance_kw)
    out_dir = Path(out_dir or Path("reports", re.sub(r"[^\w.-]+", "_", studies[0])))
    files, ptable = write_outputs(table, reports, out_dir)
    if log_mlflow:
        log_to_mlflow(table, reports, infos, out_dir, tracking_uri)
    return ReportResult(studies=reports, pareto_table=ptable, files=files, out_dir=out_dir)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--study", action="append", required=True, help="study name (repeat for several)")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    p.add_argument("--objective", action="append", metavar="METRIC[:max|min]",
                   help="objectives of the front (default: each study's study.objectives tag); a metric "
                        "the studies' models do not report, or a bad direction, is an error (exit 2)")
    p.add_argument("--out", help="output directory (default reports/<first study>)")
    p.add_argument("--no-mlflow-log", action="store_true", help="write files only: no artifacts, no pareto tags")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        res = build_report(a.study, tracking_uri=a.tracking_uri, objectives=a.objective,
                           out_dir=a.out, log_mlflow=not a.no_mlflow_log)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, rep in res.studies.items():
        print(f"{name}: {rep.n_completed}/{rep.n_runs} completed, {len(rep.front_run_ids)} on the front "
              f"[{_objective_label(rep.objectives)}], hypervolume {rep.hypervolume:.4g}")
        for metric, note in rep.importance_notes.items():
            print(f"  importance: {note}")
    print(to_markdown(res.pareto_table))
    print(f"report: {res.out_dir.resolve()}/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
