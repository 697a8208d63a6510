"""What ``analysis.report`` prints: a compact table of a study's trials that fits a terminal
(trial, status, the objectives, front / baseline marks, the params that vary), the baselines
line, and ``trials.csv`` (the same rows with every varying param and the run ids, the full
table beside ``pareto_runs.csv``).

:func:`trial_rows` computes (a DataFrame), :func:`render` lays it out; nothing is drawn here.
"""
from __future__ import annotations

import math
import shutil
import textwrap
from typing import Optional

import pandas as pd

from analysis.baselines import method_label
from analysis.runs import fmt

MAX_ROWS = 20
FRONT, BEATS = "*", "+"


def number(v) -> str:
    """Fixed-width text of a metric value: 4 decimals (1 above 1000), "-" when missing."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(v):
        return "-"
    return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.4f}"


def _param(v) -> str:
    if isinstance(v, float) and not math.isnan(v):
        return f"{v:.3g}"
    return fmt(v) or "-"


def trial_rows(table: pd.DataFrame, rep) -> pd.DataFrame:
    """One row per child run of ``rep.study`` (analysis.report.StudyReport), by trial number:
    ``trial``, ``status``, the objectives (``val/`` dropped), ``front`` (``*`` on the Pareto
    front, ``*+`` when it also beats the baselines on a validation metric), the varying params
    and ``run_id``."""
    sub = table[table["study"] == rep.study].sort_values("trial_number")
    front = set(rep.front_run_ids)
    rows = []
    for _, r in sub.iterrows():
        mark = (FRONT + (BEATS if any(rep.beats.get(r["run_id"], {}).values()) else "")) if r["run_id"] in front else ""
        row = {"trial": int(r["trial_number"]), "status": r["status"] or r["mlflow_status"].lower()}
        for o in rep.objectives:
            row[o.metric.removeprefix("val/")] = r.get(f"metrics.{o.metric}", math.nan)
        row["front"] = mark
        for c in rep.varying_params:
            row[c[len("params."):]] = r.get(c)
        row["run_id"] = r["run_id"]
        rows.append(row)
    return pd.DataFrame(rows)


def _layout(cols: list[str], cells: list[list[str]], right: set) -> list[str]:
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    def line(vals):
        return "  ".join(v.rjust(w) if c in right else v.ljust(w) for c, v, w in zip(cols, vals, widths)).rstrip()
    return [line(cols)] + [line(r) for r in cells]


def render(rows: pd.DataFrame, rep, width: Optional[int] = None, max_rows: int = MAX_ROWS) -> str:
    """The rows as aligned text no wider than ``width`` (the terminal's): params that do not fit
    are named below; above ``max_rows`` trials only the front is listed."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    if rows.empty:
        return "  (no trial)"
    objs = [o.metric.removeprefix("val/") for o in rep.objectives]
    params = [c[len("params."):] for c in rep.varying_params]
    shown = rows if len(rows) <= max_rows else rows[rows["front"] != ""]
    base = ["trial", "status", *objs, "front"]
    cols = list(base)
    def cells(names):
        return [[str(r["trial"]), str(r["status"]), *(number(r[o]) for o in objs), r["front"],
                 *(_param(r[p]) for p in names[len(base):])] for _, r in shown.iterrows()]
    for p in params:  # as many params as fit
        if max(len(l) for l in _layout(cols + [p], cells(cols + [p]), set(objs))) + 2 > width:
            break
        cols.append(p)
    out = ["  " + l for l in _layout(cols, cells(cols), {"trial", *objs})]
    left = params[len(cols) - len(base):]
    notes = []
    if len(shown) < len(rows):
        notes.append(f"({len(rows) - len(shown)} trials off the front not listed: all {len(rows)} in trials.csv)")
    if left:
        notes.append(f"(params not shown for width: {', '.join(left)}; all in trials.csv)")
    notes.append(f"front: {FRONT} on the Pareto front, {FRONT}{BEATS} on it and beating the strongest baseline")
    return "\n".join(out + [_wrapped(n, width) for n in notes])


def baselines_line(rep) -> str:
    """"baselines: K-means val/acc 0.42 (strongest) ...; Pareto trials beating it on val/acc: 3, 5"."""
    b = rep.baselines
    if not b:
        return "  baselines: none logged on the study's parent run"
    parts = []
    for method in b.methods:
        vals = " ".join(f"{k}={number(v)}" for k, v in sorted(b.by_method[method].items(),
                                                             key=lambda kv: (not kv[0].startswith("val/"), kv[0])))
        parts.append(f"{method_label(method)}{' (strongest)' if method == b.strongest else ''} {vals}")
    lines = ["  baselines: " + "; ".join(parts)]
    for m in (k for k in b.metrics if k.startswith("val/")):
        ref = b.reference(m)
        if ref is None:
            continue
        who = rep.beating(m)
        lines.append(f"  {m}: " + (f"Pareto trials {', '.join(map(str, who))} beat" if who else "no Pareto trial beats")
                     + f" {method_label(ref[0])} ({number(ref[1])})")
    return "\n".join(lines)


def _wrapped(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="      ",
                                    break_on_hyphens=False) or [""])


def study_block(table: pd.DataFrame, rep, width: Optional[int] = None) -> str:
    """Everything printed for one study, no line wider than ``width`` (the terminal's)."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    lines = [_wrapped(f"{rep.study}: {rep.n_completed}/{rep.n_runs} completed, {len(rep.front_run_ids)} on the "
                      f"front, hypervolume {rep.hypervolume:.4g}", width)[2:],
             _wrapped(f"objectives {', '.join(str(o) for o in rep.objectives)}; hypervolume reference "
                      f"{rep.reference}; MLflow tag pareto.{rep.key}", width)]
    lines += [_wrapped(l.strip(), width) for l in baselines_line(rep).splitlines()]
    lines.append(render(trial_rows(table, rep), rep, width))
    for imp in rep.importances:
        top = max(imp.values, key=imp.values.get)
        lines.append(_wrapped(f"importance for {imp.metric} ({imp.n_trials} trials): {top} first", width))
    lines += [_wrapped(f"importance: {note}", width) for note in rep.importance_notes.values()]
    return "\n".join(lines)
