"""Drawing only: every number drawn here (fronts, staircases, reference points, hypervolumes,
importances) is computed by study.pareto / analysis.importance / analysis.report.

* :data:`METRIC_NAMES` / :func:`metric_label` / :func:`axis_label` - the one table that spells
  metric names out ("val/dbi_z" -> "Davies-Bouldin index on z (latent mean)", with
  "validation, lower is better" on axes; directions from ``trainables.metrics``).
* :func:`scatter_grid_png` - scatter panels, each titled: one colour per study, each study's
  2-D front of the plotted pair drawn as a STAIRCASE (the boundary of the region it
  dominates; a diagonal between two front points would show a trade-off no trial reached),
  the runs on the study's own Pareto front ringed; on the panels of the objectives
  themselves, the fixed hypervolume reference point (black X) and the dominated region
  (shaded, its area is the hypervolume).
* :func:`hypervolume_png` - hypervolume after each completed trial, per study.
* :func:`importance_png` - one panel per study and objective (fANOVA), with its trial count.
* :func:`interactive_html` - ONE self-contained HTML page (plotly.js inline, no network): the
  same panels (hover: study, trial number, the objectives and the parameters that vary across
  the study's trials), the hypervolume curves, the importances and the Pareto table.
"""
from __future__ import annotations

import html
import math
import textwrap
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from analysis.runs import fmt
from trainables.metrics import metric_direction, metric_family

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]

METRIC_NAMES = {
    "acc": "Clustering accuracy", "nmi": "Normalised mutual information", "ari": "Adjusted Rand index",
    "silhouette": "Silhouette coefficient", "dbi": "Davies-Bouldin index", "chi": "Calinski-Harabasz index",
    "occupancy_max": "Largest cluster's share", "occupancy_entropy": "Cluster-occupancy entropy",
    "n_clusters_used": "Clusters used", "collapsed": "Collapsed", "time_s": "Time (s)", "loss": "Loss",
}
REPRESENTATION_NAMES = {"z": "z (latent mean)", "y": "y (cluster posterior)", "x": "x (input features)"}
SPLIT_NAMES = {"val": "validation", "test": "test", "train": "training"}


def metric_label(metric: str, short: bool = False) -> str:
    """Full name of a metric: ``val/dbi_z`` -> "Davies-Bouldin index on z (latent mean)"
    (``short``: "Davies-Bouldin index on z")."""
    base = metric.split("/")[-1]
    family = metric_family(metric)
    name = METRIC_NAMES.get(family, base)
    rep = base[len(family) + 1:] if base.startswith(family + "_") else ""
    if rep:
        name += " on " + (rep if short else REPRESENTATION_NAMES.get(rep, rep))
    return name


def axis_label(metric: str, sep: str = "\n") -> str:
    """``metric_label`` + split and direction: "... on z (latent mean)<sep>validation, lower is better"."""
    split = SPLIT_NAMES.get(metric.split("/")[0], "") if "/" in metric else ""
    better = "higher" if metric_direction(metric) == "max" else "lower"
    return f"{metric_label(metric)}{sep}{split + ', ' if split else ''}{better} is better"


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _mpl():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _wrap(text: str, width: int = 60) -> str:
    return "\n".join(textwrap.fill(line, width) for line in text.splitlines())


def _draw_panel(ax, panel: dict) -> None:
    ref = panel.get("reference")
    for i, s in enumerate(panel["series"]):
        c = COLOURS[i % len(COLOURS)]
        x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=16, color=c, alpha=0.5, label=s["study"])
        steps = np.asarray(s["steps"], float)
        if len(steps):
            ax.plot(steps[:, 0], steps[:, 1], "-", color=c, lw=1.4)
            if panel.get("shade"):
                ax.fill(np.r_[steps[:, 0], ref[0]], np.r_[steps[:, 1], ref[1]], color=c, alpha=0.08, lw=0)
        p = np.asarray(s["pareto"], bool) & ok
        if p.any():
            ax.scatter(x[p], y[p], s=90, facecolor="none", edgecolor=c, lw=1.6, zorder=4)
    if ref is not None:
        ax.scatter([ref[0]], [ref[1]], marker="X", s=80, color="black", zorder=5)
        ax.annotate(f"reference ({fmt(float(ref[0]))}, {fmt(float(ref[1]))})", (ref[0], ref[1]),
                    textcoords="offset points", xytext=(6, 6), fontsize=7)
    ax.set_title(_wrap(panel["title"], 62), fontsize=9)
    ax.set_xlabel(axis_label(panel["x"]), fontsize=8)
    ax.set_ylabel(axis_label(panel["y"]), fontsize=8)
    ax.grid(alpha=0.3)


def scatter_grid_png(panels: Sequence[dict], path: Path, title: str) -> Optional[Path]:
    """``panels``: dicts with ``x``, ``y`` (metric names), ``title``, ``reference`` ((x, y) or
    None) and ``series``: one per study with ``study``, ``x`` [N], ``y`` [N], ``steps`` [K, 2]
    (staircase vertices) and ``pareto`` (mask [N] of the study's own front); ``shade``: fill the
    region under the steps (two objectives: its area is the hypervolume)."""
    if not panels:
        return None
    plt = _mpl()
    n = len(panels)
    cols = 2 if n == 4 else min(3, n)
    rows = math.ceil(n / cols)
    width, height = max(5.2 * cols, 7.0), 4.6 * rows + 1.2
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(ax, panel)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(title, x=0.01, y=1 - 0.12 / height, ha="left", va="top", fontsize=11)
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.01, 1 - 0.42 / height),
               ncol=min(6, len(labels)), frameon=False, fontsize=8)
    note = ("Dots: completed trials. Steps: each study's 2-D front of the plotted pair. Rings: the study's "
            "Pareto front on its own objectives.")
    if any(p.get("reference") is not None for p in panels):
        note += " X: the fixed hypervolume reference point."
    if any(p.get("shade") for p in panels):
        note += " Shaded: the region the front dominates (its area is the hypervolume)."
    fig.text(0.01, 0.005, _wrap(note, int(width * 17)), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1 - 0.55 / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def hypervolume_png(histories: dict[str, np.ndarray], path: Path, legends: dict[str, str],
                    reference_text: str) -> Path:
    """``histories``: study -> hypervolume after each completed trial; ``legends``: study -> label."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for i, (study, hv) in enumerate(histories.items()):
        hv = np.asarray(hv, float)
        ax.plot(np.arange(1, len(hv) + 1), hv, "-o", ms=3, color=COLOURS[i % len(COLOURS)], label=legends[study])
    ax.set_title("Hypervolume of each study's Pareto front after each completed trial", fontsize=10)
    ax.set_xlabel("completed trials (in completion order)")
    ax.set_ylabel("hypervolume (higher is better)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.text(0.01, 0.005, _wrap(reference_text, 120), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def importance_png(panels: Sequence[dict], path: Path, cols: int) -> Path:
    """``panels``: dicts with ``title`` and either ``values`` (param -> importance) or ``note``;
    ``cols`` per row (one row per study: its number of objectives)."""
    plt = _mpl()
    cols = max(1, min(cols, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows + 0.5), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.suptitle("Parameter importance per objective (fANOVA on the Optuna study's trials)", x=0.01, ha="left",
                 fontsize=11)
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(panel["title"], fontsize=9)
        if panel.get("note"):
            ax.text(0.5, 0.5, _wrap(panel["note"], 55), ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        names, vals = list(panel["values"]), list(panel["values"].values())
        ax.barh(np.arange(len(names)), vals, color=COLOURS[0])
        ax.set_yticks(np.arange(len(names)))
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (fANOVA, sums to 1)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _hover_text(row: pd.Series, columns: Sequence[str]) -> str:
    lines = [f"<b>{html.escape(str(row['study']))}</b> trial {row['trial_number']}"]
    for c in columns:
        if fmt(row.get(c)) == "":
            continue
        name = metric_label(c[len("metrics."):], short=True) if c.startswith("metrics.") else c[len("params."):]
        lines.append(f"{html.escape(name)} = {html.escape(fmt(row[c]))}")
    return "<br>".join(lines)


def _plotly_panels(panels: Sequence[dict], table: pd.DataFrame, hover_columns: dict[str, list]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p["title"] for p in panels],
                        horizontal_spacing=0.14, vertical_spacing=min(0.3, 150 / (460 * rows)))
    seen = set()
    for k, panel in enumerate(panels):
        r, c = k // cols + 1, k % cols + 1
        ref = panel.get("reference")
        for i, s in enumerate(panel["series"]):
            colour = COLOURS[i % len(COLOURS)]
            x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
            ok = np.isfinite(x) & np.isfinite(y)
            idx = [j for j, o in zip(s["index"], ok) if o]
            pareto = np.asarray(s["pareto"], bool)[ok]
            steps = np.asarray(s["steps"], float)
            if len(steps) and panel.get("shade"):  # the dominated region: its area is the hypervolume
                fig.add_trace(go.Scatter(x=np.r_[steps[:, 0], ref[0]], y=np.r_[steps[:, 1], ref[1]], mode="none",
                                         fill="toself", fillcolor=_rgba(colour, 0.10), legendgroup=s["study"],
                                         showlegend=False, hoverinfo="skip"), row=r, col=c)
            if len(steps):
                fig.add_trace(go.Scatter(x=steps[:, 0], y=steps[:, 1], mode="lines", line=dict(color=colour, width=1.5),
                                         legendgroup=s["study"], showlegend=False, hoverinfo="skip"), row=r, col=c)
            fig.add_trace(go.Scatter(
                x=x[ok], y=y[ok], mode="markers", name=s["study"], legendgroup=s["study"],
                showlegend=s["study"] not in seen,
                marker=dict(color=colour, size=np.where(pareto, 11, 6),
                            line=dict(color="black", width=np.where(pareto, 2, 0))),
                customdata=[[table.loc[j, "run_id"]] for j in idx],
                hovertext=[_hover_text(table.loc[j], hover_columns[s["study"]]) for j in idx],
                hovertemplate="%{hovertext}<extra></extra>"), row=r, col=c)
            seen.add(s["study"])
        if ref is not None:
            fig.add_trace(go.Scatter(x=[ref[0]], y=[ref[1]], mode="markers+text", showlegend=False,
                                     marker=dict(symbol="x", size=11, color="black"),
                                     text=[f"reference ({fmt(float(ref[0]))}, {fmt(float(ref[1]))})"],
                                     textposition="top right", hoverinfo="skip"), row=r, col=c)
        fig.update_xaxes(title_text=axis_label(panel["x"], "<br>"), row=r, col=c)
        fig.update_yaxes(title_text=axis_label(panel["y"], "<br>"), row=r, col=c)
    fig.update_annotations(font_size=13)
    fig.update_layout(height=460 * rows, width=620 * cols + 120, margin=dict(t=60),
                      hoverlabel=dict(align="left", font_size=11), legend=dict(title="study"))
    return fig


def _importance_html(panels: Sequence[dict]) -> str:
    """The importance panels as small tables (parameter, importance), or their message."""
    parts = []
    for panel in panels:
        head = html.escape(panel["title"]).replace("\n", "<br>")
        if panel.get("note"):
            parts.append(f"<div class='imp'><b>{head}</b><p class='note'>{html.escape(panel['note'])}</p></div>")
            continue
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in panel["values"].items())
        parts.append(f"<div class='imp'><b>{head}</b><table><tr><th>parameter</th><th>importance</th></tr>"
                     f"{rows}</table></div>")
    return "".join(parts)


def interactive_html(table: pd.DataFrame, panels: Sequence[dict], hover_columns: dict[str, list],
                     histories: dict[str, np.ndarray], legends: dict[str, str], reference_text: str,
                     importance_panels: Sequence[dict], pareto_table: pd.DataFrame, path: Path, title: str) -> Path:
    """One self-contained page. ``table`` is the completed-run table the panels index into
    (panel series carry ``index``: the row labels of their points); ``hover_columns``: study ->
    the columns its hover lists (objectives, then the parameters that vary)."""
    import plotly.graph_objects as go

    scatter = _plotly_panels(panels, table, hover_columns).to_html(
        full_html=False, include_plotlyjs=True, div_id="pareto-scatter") if panels else "<p>(no completed trial)</p>"
    hv = go.Figure()
    for i, (study, h) in enumerate(histories.items()):
        hv.add_trace(go.Scatter(x=list(range(1, len(h) + 1)), y=list(map(float, h)), mode="lines+markers",
                                name=legends[study], line=dict(color=COLOURS[i % len(COLOURS)])))
    hv.update_layout(title="Hypervolume of each study's Pareto front after each completed trial",
                     xaxis_title="completed trials (in completion order)",
                     yaxis_title="hypervolume (higher is better)", height=420, width=900,
                     legend=dict(orientation="h", y=-0.25))
    hv_html = hv.to_html(full_html=False, include_plotlyjs=not panels, div_id="hypervolume")
    table_html = pareto_table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}",
                                      classes="pareto", border=0)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em;max-width:1400px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} p.note{{font-size:13px;color:#333}}
div.imp{{display:inline-block;vertical-align:top;margin:0 2em 1em 0;font-size:13px}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="note">Validation metrics of completed trials (pruned, diverged, failed and non-finite trials are
left out). Steps: each study's 2-D front of the plotted pair, the boundary of the region it dominates.
Large markers with a black ring: the study's Pareto front on its own objectives. Hover a point for its
trial number, objectives and the parameters that vary across the study's trials.</p>
<p class="note"><b>Hypervolume.</b> {html.escape(reference_text)}</p>
{scatter}
<h2>Hypervolume</h2>
{hv_html}
<h2>Parameter importance (fANOVA on the Optuna study's own trials and distributions)</h2>
{_importance_html(importance_panels)}
<h2>Pareto-optimal runs (selected on validation, test metrics shown)</h2>
{table_html}
</body></html>"""
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
