"""``python -m analysis.report --study NAME [--study NAME2 ...]``: Pareto views of studies.

Reads the studies from MLflow (analysis.runs) and, for their parameter importance, from
their Optuna storage (analysis.importance). For each study, on the VALIDATION metrics of its
completed trials and on its objectives (``--objective``, parsed by
``study.objectives.parse_objective``, or the parent's ``study.objectives`` tag):

* the Pareto front;
* the hypervolume after each completed trial (completion order) against the FIXED reference
  point of the objectives (study.pareto.REFERENCE: the worst end of each metric's range,
  e.g. accuracy 0, silhouette -1, Davies-Bouldin 5), so a study's hypervolume is the same in
  every report, whichever other studies stand beside it;
* the fANOVA importance of its parameters for each objective, on the Optuna study's own
  trials and distributions (a message instead when the storage is not reachable).

Files written to ``--out`` (default ``reports/<first study>/<objective key>``):
``pareto_objectives.png`` (the objectives against each other, zoomed to the trials, with the
reference point (an arrow when outside) and the dominated region), ``pareto_silhouette.png``,
``pareto_dbi.png``, ``pareto_chi.png`` (each clustering metric against accuracy and NMI),
``hypervolume.png``, ``importance.png``, ``report.html`` (the interactive page) with the
``plotly.min.js`` it loads, ``pareto_runs.csv`` / ``.md`` (the Pareto-optimal runs with their
validation objectives, the metrics on which they beat the baselines, varying params and TEST
metrics), ``trials.csv`` (every trial: status, objectives, front, varying params) and
``summary.json``. Front points are labelled with their trial numbers. The study's classical
baselines (parent metrics ``baseline/<method>_<split>_<metric>``, analysis.baselines) are
reference lines on every axis whose metric one of them logged (validation figures:
validation baselines), the strongest emphasised; the front trials that beat it are starred
and listed in summary.json, report.html and the printed table. The terminal gets a compact
table (analysis.terminal), the full ones stay in the files.

In MLflow, keyed by the objectives (:func:`objective_key`, e.g. ``silhouette_z-max__acc-max``)
so that reports on different objectives never overwrite each other: the files go to the
parent run's artifacts under ``pareto_report/<key>/``, every child run is tagged
``pareto.<key>=true|false`` and the parent ``pareto.<key>.n_runs`` / ``pareto.<key>.run_ids``.

Every check (study names, objective names and directions, a reference for each objective)
runs before any file, tag or artifact is written: a bad ``--objective`` exits 2 with the
valid names. ``compute_report`` is the pure part (no I/O); analysis.figures only draws.
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

from analysis import figures, page, terminal
from analysis.baselines import Baselines, method_label
from analysis.importance import StorageUnavailable, importances, load_trials
from study.stores import check_store
from study.pareto import hypervolume, hypervolume_history, pareto_front, reference_point, staircase
from analysis.runs import client, completed, fmt, load_runs, objective_matrix
from study.objectives import Objective, parse_objectives
from trainables.metrics import metric_direction

log = logging.getLogger(__name__)

ARTIFACT_DIR = "pareto_report"
FAMILIES = ("silhouette", "dbi", "chi")
SUPERVISED = ("val/acc", "val/nmi")


@dataclass
class StudyReport:
    study: str
    objectives: list            # [Objective]
    key: str                    # objective_key(objectives)
    run_ids: list               # completed runs, completion order
    front_run_ids: list         # Pareto-optimal run ids
    reference: list             # fixed hypervolume reference point (original units)
    hypervolume: float
    hypervolume_history: list   # after each completed trial
    importances: list           # [analysis.importance.Importance], one per rated objective
    importance_notes: dict      # metric -> why it was not rated
    varying_params: list        # params.* columns that vary across the completed trials
    n_runs: int                 # all child runs
    n_completed: int
    baselines: Baselines = field(default_factory=Baselines)  # the parent's baseline/* metrics
    beats: dict = field(default_factory=dict)  # front run id -> {val baseline metric: beats the reference}
    trial_numbers: dict = field(default_factory=dict)  # run id -> trial number (every child run)

    def beating(self, metric: str) -> list[int]:
        """Trial numbers of the front runs that beat the baselines' reference on ``metric``."""
        return sorted(self.trial_numbers[r] for r, b in self.beats.items() if b.get(metric))


@dataclass
class ReportResult:
    studies: dict                          # name -> StudyReport
    pareto_table: pd.DataFrame
    files: dict = field(default_factory=dict)
    out_dir: Optional[Path] = None
    table: Optional[pd.DataFrame] = None   # the child runs the report was computed on


def objective_key(objectives: Sequence[Objective]) -> str:
    """``[val/silhouette_z:max, val/acc:max]`` -> ``"silhouette_z-max__acc-max"``: the name of a
    report's artifact folder and tags (objectives are validation metrics, so ``val/`` is dropped)."""
    return "__".join(f"{o.metric.removeprefix('val/').replace('/', '_')}-{o.mode}" for o in objectives)


# ------------------------------------------------------------------------ computing
def _varying_params(done: pd.DataFrame) -> list[str]:
    return [c for c in done.columns if c.startswith("params.") and done[c].astype(str).nunique() > 1]


def _beats(done: pd.DataFrame, front_ids: list, baselines: Baselines) -> dict:
    """front run id -> {validation baseline metric: does the run beat the reference on it}."""
    metrics = [m for m in baselines.metrics if m.startswith("val/") and f"metrics.{m}" in done]
    rows = done.set_index("run_id")
    return {rid: {m: bool(baselines.beats(m, rows.at[rid, f"metrics.{m}"])) for m in metrics} for rid in front_ids}


def compute_report(table: pd.DataFrame, objectives_by_study: dict[str, list],
                   trials_by_study: dict[str, tuple],
                   baselines_by_study: Optional[dict[str, Baselines]] = None) -> dict[str, StudyReport]:
    """Fronts, hypervolume histories, importances and the runs that beat the baselines of each
    study in ``table``. ``trials_by_study``: study -> (analysis.importance.OptunaTrials or None,
    why None); ``baselines_by_study``: study -> its parent's baselines (none: no comparison)."""
    out = {}
    for study, objs in objectives_by_study.items():
        sub = table[table["study"] == study]
        done = completed(sub)
        metrics, dirs = [o.metric for o in objs], [o.mode for o in objs]
        vals = objective_matrix(done, metrics)
        mask = pareto_front(vals, dirs) if len(done) else np.zeros(0, bool)
        ref = reference_point(metrics)
        source, unavailable = trials_by_study[study]
        rated, notes = importances(source, unavailable, sub, metrics)
        base = (baselines_by_study or {}).get(study) or Baselines()
        front_ids = done["run_id"][mask].tolist()
        out[study] = StudyReport(
            study=study, objectives=list(objs), key=objective_key(objs), run_ids=done["run_id"].tolist(),
            front_run_ids=front_ids, reference=ref.tolist(),
            hypervolume=hypervolume(vals[mask], dirs, ref) if mask.any() else 0.0,
            hypervolume_history=hypervolume_history(vals, dirs, ref).tolist(),
            importances=rated, importance_notes=notes, varying_params=_varying_params(done),
            n_runs=len(sub), n_completed=len(done), baselines=base, beats=_beats(done, front_ids, base),
            trial_numbers=dict(zip(sub["run_id"], sub["trial_number"].astype(int))))
    return out


def _series(table: pd.DataFrame, reports: dict[str, StudyReport], xm: str, ym: str,
            dirs: tuple, ref) -> list[dict]:
    """Per study: the completed runs' values of the pair, their trial numbers, the staircase,
    the study's own front (``pareto``) and the front runs that beat the study's baselines on
    every axis of the pair that has one (``beats``; all False where no axis has a baseline)."""
    series = []
    for study, rep in reports.items():
        done = completed(table[table["study"] == study])
        vals = objective_matrix(done, [xm, ym])
        pareto = done["run_id"].isin(rep.front_run_ids).to_numpy()
        axes = [m for m in (xm, ym) if rep.baselines.values(m)]
        beats = np.array([bool(axes) and p and all(rep.beats.get(r, {}).get(m, False) for m in axes)
                          for r, p in zip(done["run_id"], pareto)], dtype=bool)
        series.append({"study": study, "x": vals[:, 0], "y": vals[:, 1], "index": list(done.index),
                       "trials": done["trial_number"].astype(int).tolist(),
                       "steps": staircase(vals, list(dirs), ref), "pareto": pareto, "beats": beats})
    return series


def baseline_lines(reports: dict[str, StudyReport], xm: str, ym: str) -> list[dict]:
    """The reference lines of a panel: each baseline method that logged the metric of an axis
    (the same split: a val axis gets the val baselines), one line per distinct value; the
    strongest method of a study is ``strongest`` (drawn emphasised)."""
    lines: dict[tuple, dict] = {}
    for study, rep in reports.items():
        strongest = rep.baselines.strongest
        for axis, metric in (("x", xm), ("y", ym)):
            for method, value in rep.baselines.values(metric).items():
                line = lines.setdefault((axis, method, round(value, 12)), {
                    "axis": axis, "metric": metric, "method": method, "value": value, "studies": [],
                    "strongest": False})
                line["studies"].append(study)
                line["strongest"] |= method == strongest
    out = _merge_equal(list(lines.values()))
    for line in out:
        values = {l["value"] for l in out if l["axis"] == line["axis"] and l["method"] == line["method"]}
        where = f" ({', '.join(line['studies'])})" if len(values) > 1 else ""
        names = " = ".join(method_label(m) for m in line["methods"])
        line["label"] = f"{names}{where} {fmt(line['value'])}"
    return sorted(out, key=lambda l: (l["axis"], not l["strongest"], l["method"]))


def _merge_equal(lines: list[dict]) -> list[dict]:
    """One line for the methods of the same studies that logged the same value on the same axis
    (e.g. K-means on a table that is standardised already, and the standardised K-means): ``methods``
    names them all, the strongest (else the first by name) first; ``method`` is that first one."""
    groups: dict[tuple, list[dict]] = {}
    for line in lines:
        groups.setdefault((line["axis"], round(line["value"], 12), tuple(line["studies"])), []).append(line)
    merged = []
    for group in groups.values():
        group.sort(key=lambda l: (not l["strongest"], l["method"]))
        merged.append({**group[0], "methods": [l["method"] for l in group],
                       "strongest": any(l["strongest"] for l in group)})
    return merged


def _panel(table, reports, xm: str, ym: str, dirs: tuple, ref, title: str, shade: bool) -> dict:
    return {"x": xm, "y": ym, "reference": ref, "shade": shade, "title": title,
            "series": _series(table, reports, xm, ym, dirs, ref), "baselines": baseline_lines(reports, xm, ym)}


def objective_panels(table: pd.DataFrame, reports: dict[str, StudyReport]) -> list[dict]:
    """One panel per pair of objectives (per objective set), the studies of that set in it,
    with the fixed reference point and the staircases running to it (shaded with two
    objectives: the area is then the hypervolume)."""
    panels = []
    by_key = {}
    for study, rep in reports.items():
        by_key.setdefault(rep.key, {})[study] = rep
    for group in by_key.values():
        objs = next(iter(group.values())).objectives
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                xo, yo = objs[j], objs[i]
                ref = reference_point([xo.metric, yo.metric])
                title = (f"Objectives: {figures.metric_label(yo.metric, True)} vs "
                         f"{figures.metric_label(xo.metric, True)}")
                panels.append(_panel(table, group, xo.metric, yo.metric, (xo.mode, yo.mode), ref, title,
                                     len(objs) == 2))
    return panels


def family_metrics(table: pd.DataFrame, family: str) -> list[str]:
    """Validation metrics of a family present with a finite value in completed runs
    (e.g. ``val/silhouette_y``, ``val/silhouette_z``)."""
    done = completed(table)
    pat = re.compile(rf"^metrics\.val/{family}(_\w+)?$")
    cols = [c for c in done.columns if pat.match(c) and np.isfinite(done[c].astype(float)).any()]
    return sorted(c[len("metrics."):] for c in cols)


def family_panels(table: pd.DataFrame, reports: dict[str, StudyReport], family: str) -> list[dict]:
    """Clustering metric of ``family`` against accuracy and NMI: every study with the 2-D
    front of the pair as a staircase, its own front (on its objectives) ringed."""
    panels = []
    for ym in family_metrics(table, family):
        for xm in SUPERVISED:
            if f"metrics.{xm}" in table:
                dirs = (metric_direction(xm), metric_direction(ym))
                title = f"{figures.metric_label(ym, True)} vs {figures.metric_label(xm, True)}"
                panels.append(_panel(table, reports, xm, ym, dirs, None, title, False))
    return panels


def importance_panels(reports: dict[str, StudyReport]) -> list[dict]:
    panels = []
    for study, rep in reports.items():
        rated = {imp.metric: imp for imp in rep.importances}
        for o in rep.objectives:
            title = f"{study}: importance for {figures.metric_label(o.metric, True)}"
            if o.metric in rated:
                panels.append({"title": f"{title}\nfANOVA on {rated[o.metric].n_trials} completed trials",
                               "values": rated[o.metric].values})
            else:  # one line: why not (the metric is in the title already)
                panels.append({"title": title, "note": rep.importance_notes[o.metric].removeprefix(f"{o.metric}: ")})
    return panels


def reference_text(reports: dict[str, StudyReport]) -> str:
    sets = {rep.key: (rep.objectives, rep.reference) for rep in reports.values()}
    parts = [", ".join(f"{figures.metric_label(o.metric, True)} = {fmt(r)}" for o, r in zip(objs, ref))
             for objs, ref in sets.values()]
    return ("Reference point: " + "; ".join(parts) + ". It is fixed per objective from the metric's bound "
            "(study/pareto.py: accuracy, NMI, Calinski-Harabasz 0; ARI and silhouette -1; Davies-Bouldin 5, "
            "a fixed choice as it is unbounded), so a study's hypervolume does not depend on the other "
            "studies in a report.")


def pareto_table(table: pd.DataFrame, reports: dict[str, StudyReport]) -> pd.DataFrame:
    """The Pareto-optimal runs: ids, validation objectives, the validation metrics on which they
    beat the study's baselines (when any study logged baselines), varying params, test metrics."""
    rows = []
    test_pat = re.compile(r"^metrics\.test/(acc|nmi|ari|silhouette|dbi|chi)(_\w+)?$")
    for study, rep in reports.items():
        sub = table[(table["study"] == study) & table["run_id"].isin(rep.front_run_ids)]
        tests = [c for c in sub.columns if test_pat.match(c)]
        for _, r in sub.iterrows():
            row = {"study": study, "space": r.get("space", ""), "run_id": r["run_id"],
                   "trial": int(r["trial_number"])}
            for o in rep.objectives:
                row[f"{o.metric} ({o.mode})"] = r.get(f"metrics.{o.metric}", np.nan)
            if any(rp.baselines for rp in reports.values()):
                won = [m for m, b in rep.beats.get(r["run_id"], {}).items() if b]
                row["beats baseline on"] = ", ".join(won) if won else ("none" if rep.baselines else "")
            for c in rep.varying_params:
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
def baselines_summary(rep: StudyReport) -> dict:
    """The study's baselines for summary.json: each method's values, the strongest, and per
    validation metric the reference a trial must beat and the Pareto trials that beat it."""
    b = rep.baselines
    refs = {m: b.reference(m) for m in b.metrics if m.startswith("val/")}
    return {**b.to_dict(),
            "reference": {m: {"method": r[0], "value": r[1]} for m, r in refs.items() if r},
            "pareto_trials_beating": {m: rep.beating(m) for m, r in refs.items() if r}}


def _summary(reports: dict[str, StudyReport]) -> dict:
    return {s: {"baselines": baselines_summary(r), "objectives": [str(o) for o in r.objectives], "key": r.key,
                "runs": r.n_runs, "completed": r.n_completed, "pareto_run_ids": r.front_run_ids,
                "hypervolume": r.hypervolume,
                "reference_point": r.reference, "hypervolume_history": r.hypervolume_history,
                "importance": {i.metric: {"n_trials": i.n_trials, "values": i.values} for i in r.importances},
                "importance_notes": r.importance_notes}
            for s, r in reports.items()}


def write_outputs(table: pd.DataFrame, reports: dict[str, StudyReport], out_dir: Path) -> tuple[dict, pd.DataFrame]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    obj_panels = objective_panels(table, reports)
    shown = {(p["x"], p["y"]) for p in obj_panels}
    html_panels = list(obj_panels)
    files["pareto_objectives"] = figures.scatter_grid_png(
        obj_panels, out_dir / "pareto_objectives.png", "Pareto fronts on the objectives (validation)")
    for fam in FAMILIES:
        panels = family_panels(table, reports, fam)
        html_panels += [p for p in panels if (p["x"], p["y"]) not in shown and (p["y"], p["x"]) not in shown]
        path = figures.scatter_grid_png(panels, out_dir / f"pareto_{fam}.png",
                                        f"{figures.METRIC_NAMES[fam]} against accuracy and NMI (validation)")
        if path:
            files[f"pareto_{fam}"] = path
    histories = {s: np.asarray(r.hypervolume_history) for s, r in reports.items()}
    legends = {s: f"{s} [{', '.join(str(o) for o in r.objectives)}]" for s, r in reports.items()}
    ref_text = reference_text(reports)
    files["hypervolume"] = figures.hypervolume_png(histories, out_dir / "hypervolume.png", legends, ref_text)
    imp_panels = importance_panels(reports)
    files["importance"] = figures.importance_png(imp_panels, out_dir / "importance.png",
                                                 max(len(r.objectives) for r in reports.values()))
    ptable = pareto_table(table, reports)
    ptable.to_csv(out_dir / "pareto_runs.csv", index=False)
    files["csv"] = out_dir / "pareto_runs.csv"
    (out_dir / "pareto_runs.md").write_text(to_markdown(ptable), encoding="utf-8")
    files["markdown"] = out_dir / "pareto_runs.md"
    trials = [terminal.trial_rows(table, rep).assign(study=name) for name, rep in reports.items()]
    pd.concat(trials, ignore_index=True).to_csv(out_dir / "trials.csv", index=False)
    files["trials"] = out_dir / "trials.csv"
    hover = {s: [f"metrics.{o.metric}" for o in r.objectives] + r.varying_params for s, r in reports.items()}
    files["html"] = page.interactive_html(completed(table), html_panels, hover, histories, legends, ref_text,
                                          imp_panels, ptable, out_dir / "report.html",
                                          title="Pareto report: " + ", ".join(reports), reports=reports)
    files["plotly_js"] = out_dir / page.PLOTLY_JS
    (out_dir / "summary.json").write_text(json.dumps(_summary(reports), indent=2), encoding="utf-8")
    files["summary"] = out_dir / "summary.json"
    return files, ptable


def log_to_mlflow(table: pd.DataFrame, reports: dict[str, StudyReport], studies: dict, out_dir: Path,
                  tracking_uri: Optional[str]) -> None:
    """Tags keyed by the objectives (``pareto.<key>``) and artifacts under ``pareto_report/<key>/``."""
    cl = client(tracking_uri)
    for name, rep in reports.items():
        parent = studies[name].parent_run_id
        front = set(rep.front_run_ids)
        for rid in table.loc[table["study"] == name, "run_id"]:
            cl.set_tag(rid, f"pareto.{rep.key}", "true" if rid in front else "false")
        cl.set_tag(parent, f"pareto.{rep.key}.n_runs", str(len(front)))
        cl.set_tag(parent, f"pareto.{rep.key}.run_ids", ",".join(rep.front_run_ids)[:5000])
        cl.log_artifacts(parent, str(out_dir), f"{ARTIFACT_DIR}/{rep.key}")


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


def check_objectives(objectives: Sequence[str], table: pd.DataFrame, infos: dict) -> list[Objective]:
    """Parsed ``--objective`` items, each a metric the studies report (else ValueError)."""
    scope = ("in study " if len(infos) == 1 else "in studies ") + ", ".join(infos)
    return parse_objectives(list(objectives), valid_metrics(table, infos), scope=scope)


def _optuna_sources(infos: dict) -> dict[str, tuple]:
    sources = {}
    for name, info in infos.items():
        try:
            sources[name] = (load_trials(info), "")
        except StorageUnavailable as exc:
            log.warning("parameter importance of %s: %s", name, exc)
            sources[name] = (None, str(exc))
    return sources


def build_report(studies: Sequence[str], *, tracking_uri: Optional[str] = None,
                 objectives: Optional[Sequence[str]] = None, out_dir: Optional[Path] = None,
                 log_mlflow: bool = True) -> ReportResult:
    if not studies:
        raise ValueError("give at least one --study")
    table, infos = load_runs(studies, tracking_uri)
    # every check before anything is written (files, tags, artifacts)
    given = check_objectives(objectives, table, infos) if objectives else None
    objs_by_study = {}
    for name, info in infos.items():
        objs = given or info.objectives
        if not objs:
            raise ValueError(f"study {name!r} has no study.objectives tag: pass --objective METRIC:max|min")
        reference_point([o.metric for o in objs])
        objs_by_study[name] = objs
    reports = compute_report(table, objs_by_study, _optuna_sources(infos),
                             {name: info.baselines for name, info in infos.items()})
    first = reports[studies[0]]
    out_dir = Path(out_dir or Path("reports", re.sub(r"[^\w.-]+", "_", studies[0]), first.key))
    files, ptable = write_outputs(table, reports, out_dir)
    if log_mlflow:
        log_to_mlflow(table, reports, infos, out_dir, tracking_uri)
    return ReportResult(studies=reports, pareto_table=ptable, files=files, out_dir=out_dir, table=table)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--study", action="append", required=True, help="study name (repeat for several)")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db",
                   help="MLflow tracking URI (default sqlite:///mlflow.db)")
    p.add_argument("--objective", action="append", metavar="METRIC[:max|min]",
                   help="objectives of the front (default: each study's study.objectives tag); a metric "
                        "the studies' models do not report, or a bad direction, is an error (exit 2)")
    p.add_argument("--out", help="output directory (default reports/<first study>/<objective key>)")
    p.add_argument("--no-mlflow-log", action="store_true", help="write files only: no artifacts, no pareto tags")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        check_store(a.tracking_uri, "MLflow store", "--tracking-uri")
        res = build_report(a.study, tracking_uri=a.tracking_uri, objectives=a.objective,
                           out_dir=a.out, log_mlflow=not a.no_mlflow_log)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for rep in res.studies.values():
        print(terminal.study_block(res.table, rep))
    print(f"full tables: {res.out_dir.resolve()}/pareto_runs.md, trials.csv")
    print(f"report: {res.out_dir.resolve()}/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
