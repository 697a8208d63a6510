"""Drawing only: every number shown here is computed by analysis.pareto / analysis.report.

* :func:`scatter_grid_png` - clustering metrics (silhouette, DBI, CHI) against ACC and NMI,
  one colour per study, each study's 2-D front for the pair drawn as a staircase, the
  runs on the study's Pareto front (its own objectives) ringed.
* :func:`hypervolume_png` - hypervolume after each completed trial, per study.
* :func:`importance_png` - parameter importance per objective, per study.
* :func:`interactive_html` - ONE self-contained HTML page (plotly.js inline, no network):
  the same scatter panels with hover showing run id, params and metrics, the hypervolume
  curves and the Pareto table.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from analysis.runs import fmt

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _mpl():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _label(metric: str) -> str:
    return metric.replace("metrics.", "")


def scatter_grid_png(panels: Sequence[dict], path: Path, title: str = "") -> Optional[Path]:
    """``panels``: dicts with ``x``, ``y`` (metric names), ``dirs`` (x dir, y dir) and
    ``series``: one per study with ``study``, ``x`` [N], ``y`` [N], ``front`` (mask [N] of
    the 2-D front for this pair) and ``pareto`` (mask [N] of the study's own front)."""
    if not panels:
        return None
    plt = _mpl()
    n = len(panels)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.9 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        for i, s in enumerate(panel["series"]):
            c = COLOURS[i % len(COLOURS)]
            x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
            ok = np.isfinite(x) & np.isfinite(y)
            ax.scatter(x[ok], y[ok], s=16, color=c, alpha=0.45, label=f"{s['study']}")
            f = np.asarray(s["front"], bool) & ok
            if f.any():
                order = np.argsort(x[f])
                fx, fy = x[f][order], y[f][order]
                ax.plot(fx, fy, "-", color=c, lw=1.4)
                ax.scatter(fx, fy, s=34, color=c, edgecolor="black", lw=0.6, zorder=3)
            p = np.asarray(s["pareto"], bool) & ok
            if p.any():
                ax.scatter(x[p], y[p], s=110, facecolor="none", edgecolor=c, lw=1.6, zorder=4)
        xd, yd = panel["dirs"]
        ax.set_xlabel(f"{_label(panel['x'])} ({'higher' if xd == 'max' else 'lower'} is better)")
        ax.set_ylabel(f"{_label(panel['y'])} ({'higher' if yd == 'max' else 'lower'} is better)")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(4, len(labels)), frameon=False)
    fig.suptitle(title or "validation metrics: dots = completed trials, line = 2-D front, ring = study front",
                 y=0.005, va="bottom", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def hypervolume_png(histories: dict[str, np.ndarray], path: Path, objectives: dict[str, str]) -> Path:
    """``histories``: study -> hypervolume after each completed trial."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (study, hv) in enumerate(histories.items()):
        hv = np.asarray(hv, float)
        ax.plot(np.arange(1, len(hv) + 1), hv, "-o", ms=3, color=COLOURS[i % len(COLOURS)],
                label=f"{study}  [{objectives.get(study, '')}]")
    ax.set_xlabel("completed trials (in completion order)")
    ax.set_ylabel("hypervolume of the front")
    ax.grid(alpha=0.3)
    if histories:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def importance_png(importances: dict[str, pd.DataFrame], notes: dict[str, dict], path: Path) -> Path:
    """``importances``: study -> DataFrame [param x metric]; ``notes``: study -> metric -> why not."""
    plt = _mpl()
    n = max(1, len(importances))
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4), squeeze=False)
    for ax, (study, table) in zip(axes.flat, importances.items()):
        if table is None or table.empty:
            msg = "\n".join(notes.get(study, {}).values()) or "no importance computed"
            ax.text(0.5, 0.5, _wrap(msg), ha="center", va="center", fontsize=8, transform=ax.transAxes)
            ax.axis("off")
        else:
            k = len(table.columns)
            ys = np.arange(len(table.index))
            h = 0.8 / k
            for j, metric in enumerate(table.columns):
                ax.barh(ys + j * h, table[metric].fillna(0).to_numpy(), height=h,
                        color=COLOURS[j % len(COLOURS)], label=metric)
            ax.set_yticks(ys + 0.4 - h / 2)
            ax.set_yticklabels(table.index)
            ax.invert_yaxis()
            ax.set_xlabel("importance (fANOVA, normalised)")
            ax.legend(fontsize=7)
        ax.set_title(study, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _wrap(text: str, width: int = 60) -> str:
    import textwrap
    return "\n".join(textwrap.fill(line, width) for line in text.splitlines())


def _hover_text(row: pd.Series, param_cols: list[str], metric_cols: list[str]) -> str:
    parts = [f"<b>run</b> {row['run_id']}", f"study {row['study']} trial {row.get('trial_number', '')}"]
    parts.append("<b>params</b>")
    parts += [f"{c[len('params.'):]}={html.escape(fmt(row[c]))}" for c in param_cols if fmt(row.get(c)) != ""]
    parts.append("<b>metrics</b>")
    parts += [f"{c[len('metrics.'):]}={fmt(row[c])}" for c in metric_cols if fmt(row.get(c)) != ""]
    return "<br>".join(parts)


def interactive_html(table: pd.DataFrame, panels: Sequence[dict], histories: dict[str, np.ndarray],
                     pareto_table: pd.DataFrame, path: Path, title: str = "Pareto report") -> Path:
    """One self-contained page. ``table`` is the completed-run table the panels index into
    (panel series carry ``index``: the row labels of their points)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    param_cols = [c for c in table.columns if c.startswith("params.")]
    metric_cols = [c for c in table.columns if c.startswith("metrics.val/") or c.startswith("metrics.test/")]
    hover = {idx: _hover_text(row, param_cols, metric_cols) for idx, row in table.iterrows()}

    blocks = []
    if panels:
        cols = min(3, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig = make_subplots(rows=rows, cols=cols,
                            subplot_titles=[f"{_label(p['y'])} vs {_label(p['x'])}" for p in panels])
        studies_seen = set()
        for k, panel in enumerate(panels):
            r, c = k // cols + 1, k % cols + 1
            for i, s in enumerate(panel["series"]):
                colour = COLOURS[i % len(COLOURS)]
                x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
                idx = list(s["index"])
                pareto = np.asarray(s["pareto"], bool)
                front = np.asarray(s["front"], bool)
                ok = np.isfinite(x) & np.isfinite(y)
                show = s["study"] not in studies_seen
                studies_seen.add(s["study"])
                sizes = np.where(pareto, 12, np.where(front, 9, 6))
                fig.add_trace(go.Scatter(
                    x=x[ok], y=y[ok], mode="markers", name=s["study"], legendgroup=s["study"],
                    showlegend=show,
                    marker=dict(color=colour, size=sizes[ok],
                                line=dict(color="black", width=np.where(pareto[ok], 2, 0))),
                    customdata=[[table.loc[j, "run_id"]] for j, o in zip(idx, ok) if o],
                    hovertext=[hover[j] for j, o in zip(idx, ok) if o],
                    hovertemplate="%{hovertext}<extra></extra>"), row=r, col=c)
                f = front & ok
                if f.any():
                    order = np.argsort(x[f])
                    fig.add_trace(go.Scatter(x=x[f][order], y=y[f][order], mode="lines", line=dict(color=colour),
                                             legendgroup=s["study"], showlegend=False, hoverinfo="skip"),
                                  row=r, col=c)
            fig.update_xaxes(title_text=_label(panel["x"]), row=r, col=c)
            fig.update_yaxes(title_text=_label(panel["y"]), row=r, col=c)
        fig.update_layout(height=380 * rows, width=430 * cols + 100, title=title,
                          hoverlabel=dict(align="left", font_size=11))
        blocks.append(fig.to_html(full_html=False, include_plotlyjs=True, div_id="pareto-scatter"))
    if histories:
        hv = go.Figure()
        for i, (study, h) in enumerate(histories.items()):
            hv.add_trace(go.Scatter(x=list(range(1, len(h) + 1)), y=list(map(float, h)), mode="lines+markers",
                                    name=study, line=dict(color=COLOURS[i % len(COLOURS)])))
        hv.update_layout(title="hypervolume after each completed trial", xaxis_title="completed trials",
                         yaxis_title="hypervolume", height=380, width=700)
        blocks.append(hv.to_html(full_html=False, include_plotlyjs=not blocks, div_id="hypervolume"))
    table_html = pareto_table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}",
                                      classes="pareto", border=0)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}} table.pareto{{border-collapse:collapse;font-size:12px}}
table.pareto td,table.pareto th{{border:1px solid #ccc;padding:2px 6px}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Validation metrics of completed trials; larger markers with a black ring are on the study's Pareto
front (its own objectives); lines join each study's front for the plotted pair. Hover a point for its
run id, parameters and metrics. In the MLflow UI, filter the Pareto runs with <code>tags.pareto = 'true'</code>.</p>
{''.join(blocks)}
<h2>Pareto-optimal runs (selected on validation, test metrics shown)</h2>
{table_html}
</body></html>"""
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
