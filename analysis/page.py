"""The interactive ``report.html`` (plotly), drawing only: the panels of analysis.report, the
hypervolume curves, the baselines, the importances and the Pareto table.

* :func:`panel_figure` - one plotly figure per panel: the staircases, the trials (hover: study,
  trial number, the objectives and the parameters that vary across the study's trials), the
  front ringed and labelled with trial numbers, a star on each front trial beating the
  baselines, the baselines as dashed lines (layout shapes named ``baseline:<method>:<metric>``)
  and, on the objective panels, the axes zoomed to the trials with the hypervolume reference
  point as an arrow when outside them (as :mod:`analysis.figures` does in the PNGs).
* :func:`interactive_html` - the page: panels in a responsive CSS grid (one column on a narrow
  window, as many as fit on a wide one; nothing wider than the window), plotly.js NOT inlined
  but written once per report folder as ``plotly.min.js`` beside the page (no network needed;
  the page says so when the file is missing, e.g. when it is opened alone).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from analysis.baselines import method_label
from analysis.figures import COLOURS, GOLD, rgba, axis_label, metric_label, panel_limits, reference_arrow
from analysis.runs import fmt

PLOTLY_JS = "plotly.min.js"
HEIGHT = 460


def write_plotly_js(out_dir: Path) -> Path:
    """``plotly.min.js`` of the installed plotly, once per folder (rewritten only when it differs)."""
    from plotly.offline import get_plotlyjs
    path = Path(out_dir) / PLOTLY_JS
    js = get_plotlyjs().encode("utf-8")
    if not path.is_file() or path.stat().st_size != len(js):
        path.write_bytes(js)
    return path


def _hover_text(row: pd.Series, columns: Sequence[str]) -> str:
    lines = [f"<b>{html.escape(str(row['study']))}</b> trial {row['trial_number']}"]
    for c in columns:
        if fmt(row.get(c)) == "":
            continue
        name = metric_label(c[len("metrics."):], short=True) if c.startswith("metrics.") else c[len("params."):]
        lines.append(f"{html.escape(name)} = {html.escape(fmt(row[c]))}")
    return "<br>".join(lines)


def _add_series(fig, panel: dict, i: int, s: dict, table: pd.DataFrame, hover: list) -> None:
    import plotly.graph_objects as go
    colour, ref = COLOURS[i % len(COLOURS)], panel.get("reference")
    x, y = np.asarray(s["x"], float), np.asarray(s["y"], float)
    ok = np.isfinite(x) & np.isfinite(y)
    idx = [j for j, o in zip(s["index"], ok) if o]
    pareto = np.asarray(s["pareto"], bool)[ok]
    trials = np.asarray(s["trials"])[ok]
    steps = np.asarray(s["steps"], float)
    if len(steps) and panel.get("shade"):  # the dominated region: its area is the hypervolume
        fig.add_trace(go.Scatter(x=np.r_[steps[:, 0], ref[0]], y=np.r_[steps[:, 1], ref[1]], mode="none",
                                 fill="toself", fillcolor=rgba(colour, 0.10), legendgroup=s["study"],
                                 showlegend=False, hoverinfo="skip"))
    if len(steps):
        fig.add_trace(go.Scatter(x=steps[:, 0], y=steps[:, 1], mode="lines", line=dict(color=colour, width=1.5),
                                 legendgroup=s["study"], showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=x[ok], y=y[ok], mode="markers+text", name=s["study"], legendgroup=s["study"],
        text=[str(t) if p else "" for t, p in zip(trials, pareto)], textposition="top right",
        textfont=dict(size=10, color=colour),
        marker=dict(color=colour, size=np.where(pareto, 11, 6), line=dict(color="black", width=np.where(pareto, 2, 0))),
        customdata=[[table.loc[j, "run_id"]] for j in idx],
        hovertext=[_hover_text(table.loc[j], hover) for j in idx], hovertemplate="%{hovertext}<extra></extra>"))
    beats = np.asarray(s.get("beats", np.zeros(len(x), bool)), bool)[ok] & pareto
    if beats.any():
        fig.add_trace(go.Scatter(x=x[ok][beats], y=y[ok][beats], mode="markers", name="beats the baseline",
                                 legendgroup="beats", hoverinfo="skip",
                                 marker=dict(symbol="star", size=17, color=GOLD, line=dict(color="black", width=1))))


def _add_baselines(fig, lines: Sequence[dict], limits) -> None:
    """The baselines as lines; the strongest is labelled on the plot, every line names itself on
    hover (a dozen labels along one edge would overlap; the baseline table lists them all)."""
    import plotly.graph_objects as go
    for b in lines:
        style = dict(line=dict(color="black" if b["strongest"] else "#777", width=2 if b["strongest"] else 1,
                               dash="dash" if b["strongest"] else "dot"), name=f"baseline:{b['method']}:{b['metric']}")
        if b["strongest"]:  # (an annotation_position without a text would draw plotly's "new text")
            style.update(annotation_text="strongest baseline: " + html.escape(b["label"]), annotation_font_size=10,
                         annotation_position="top right" if b["axis"] == "y" else "top left")
        if b["axis"] == "y":
            fig.add_hline(y=b["value"], **style)
        else:
            fig.add_vline(x=b["value"], **style)
        if limits:
            across = list(limits[0] if b["axis"] == "y" else limits[1])
            at = [b["value"], b["value"]]
            x, y = (across, at) if b["axis"] == "y" else (at, across)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(width=8, color="rgba(0,0,0,0)"),
                                     hovertext=[html.escape(b["label"])] * 2, hoverinfo="text", showlegend=False,
                                     name=f"hover:baseline:{b['method']}:{b['metric']}"))


def _add_reference(fig, ref, limits) -> None:
    import plotly.graph_objects as go
    text = f"reference ({fmt(float(ref[0]))}, {fmt(float(ref[1]))})"
    arrow = reference_arrow(ref, limits) if limits else None
    if arrow is None:
        fig.add_trace(go.Scatter(x=[ref[0]], y=[ref[1]], mode="markers+text", showlegend=False, text=[text],
                                 marker=dict(symbol="x", size=11, color="black"), textposition="top right",
                                 hoverinfo="skip"))
        return
    (tx, ty), (sx, sy) = arrow
    fig.add_annotation(x=tx, y=ty, xref="x domain", yref="y domain", ax=sx, ay=sy, axref="x domain",
                       ayref="y domain", text=text + "<br>outside the zoomed axes", showarrow=True, arrowhead=2,
                       font=dict(size=10), name="reference-arrow")


def panel_figure(panel: dict, table: pd.DataFrame, hover_columns: dict[str, list]):
    """One panel as a plotly Figure (see the module docstring); ``table`` is the completed-run
    table the series' ``index`` points into."""
    import plotly.graph_objects as go
    fig = go.Figure()
    for i, s in enumerate(panel["series"]):
        _add_series(fig, panel, i, s, table, hover_columns[s["study"]])
    ref = panel.get("reference")
    limits = panel_limits(panel)  # the trials and the baselines, never the reference point
    _add_baselines(fig, panel.get("baselines", []), limits)
    if limits:
        fig.update_xaxes(range=list(limits[0]))
        fig.update_yaxes(range=list(limits[1]))
    if ref is not None:
        _add_reference(fig, ref, limits)
    fig.update_xaxes(title_text=axis_label(panel["x"], "<br>"))
    fig.update_yaxes(title_text=axis_label(panel["y"], "<br>"))
    fig.update_layout(title=dict(text=html.escape(panel["title"]), font_size=13), height=HEIGHT, autosize=True,
                      margin=dict(t=50, l=70, r=20, b=60), hoverlabel=dict(align="left", font_size=11),
                      legend=dict(orientation="h", y=-0.3), template="plotly_white",
                      modebar=dict(orientation="v"))
    return fig


def hypervolume_figure(histories: dict[str, np.ndarray], legends: dict[str, str]):
    import plotly.graph_objects as go
    fig = go.Figure()
    for i, (study, h) in enumerate(histories.items()):
        fig.add_trace(go.Scatter(x=list(range(1, len(h) + 1)), y=list(map(float, h)), mode="lines+markers",
                                 name=legends[study], line=dict(color=COLOURS[i % len(COLOURS)])))
    fig.update_layout(title="Hypervolume of each study's Pareto front after each completed trial",
                      xaxis_title="completed trials (in completion order)",
                      yaxis_title="hypervolume (higher is better)",
                      height=420, autosize=True, legend=dict(orientation="h", y=-0.3), template="plotly_white")
    return fig


def _importance_html(panels: Sequence[dict]) -> str:
    """The importance panels as small tables (parameter, importance), or their one-line message."""
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


def baselines_html(reports: dict) -> str:
    """Per study: each baseline method with its values (strongest marked) and the Pareto trials
    that beat the strongest on each validation metric; a line saying none were logged."""
    parts = []
    for study, rep in reports.items():
        b = rep.baselines
        if not b:
            parts.append(f"<p class='note'>{html.escape(study)}: no baseline logged on its parent run.</p>")
            continue
        metrics = b.metrics
        head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
        rows = "".join(
            f"<tr><td>{html.escape(method_label(m))}{' (strongest)' if m == b.strongest else ''}</td>"
            + "".join(f"<td>{fmt(b.by_method[m].get(k))}</td>" for k in metrics) + "</tr>" for m in b.methods)
        verdicts = []
        for m in (k for k in metrics if k.startswith("val/")):
            ref = b.reference(m)
            if ref is None:
                continue
            who = rep.beating(m)
            verdicts.append(f"{html.escape(m)}: " + (f"Pareto trials {', '.join(map(str, who))} beat "
                                                     if who else "no Pareto trial beats ")
                            + f"{html.escape(method_label(ref[0]))} ({fmt(ref[1])})")
        parts.append(f"<div class='scroll'><b>{html.escape(study)}</b><table><tr><th>method</th>{head}</tr>{rows}"
                     f"</table><p class='note'>{'<br>'.join(verdicts)}</p></div>")
    return "".join(parts)


STYLE = ("""*{box-sizing:border-box} body{font-family:sans-serif;margin:0 auto;padding:1em;max-width:1800px}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ccc;padding:2px 6px}
p.note{font-size:13px;color:#333} div.scroll{overflow-x:auto;max-width:100%;margin-bottom:1em}
div.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,520px),1fr));gap:12px}
div.cell{min-width:0;border:1px solid #eee} """
         """div.imp{display:inline-block;vertical-align:top;margin:0 2em 1em 0;font-size:13px}
#noplotly{background:#fff3cd;padding:.5em;border:1px solid #e0c060}""")


def _div(fig, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, default_width="100%",
                       default_height=f"{fig.layout.height or HEIGHT}px", config={"responsive": True})


def interactive_html(table: pd.DataFrame, panels: Sequence[dict], hover_columns: dict[str, list],
                     histories: dict[str, np.ndarray], legends: dict[str, str], reference_text: str,
                     importance_panels: Sequence[dict], pareto_table: pd.DataFrame, path: Path, title: str,
                     reports: dict) -> Path:
    """The page (see the module docstring); ``plotly.min.js`` is written beside it."""
    write_plotly_js(Path(path).parent)
    cells = "".join(f"<div class='cell'>{_div(panel_figure(p, table, hover_columns), f'panel-{k}')}</div>"
                    for k, p in enumerate(panels)) or "<p>(no completed trial)</p>"
    table_html = pareto_table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}",
                                      classes="pareto", border=0)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style><script src="{PLOTLY_JS}"></script></head>
<body><h1>{html.escape(title)}</h1>
<p id="noplotly" hidden>The interactive plots need <code>{PLOTLY_JS}</code> beside this page: it is in the
report folder, but a viewer that shows the page alone (MLflow's artifact viewer) cannot load it. Download the
folder and open the page there; the PNG figures beside it show the same panels.</p>
<p class="note">Validation metrics of completed trials (pruned, diverged, failed and non-finite trials are
left out). Steps: each study's 2-D front of the plotted pair, the boundary of the region it dominates.
Large markers with a black ring, labelled with their trial numbers: the study's Pareto front on its own
objectives. Dashed line: the strongest baseline the study logged, dotted: the others; a star: a front
trial that beats the strongest. Hover a point for its trial number, objectives and the parameters that
vary across the study's trials.</p>
<p class="note"><b>Hypervolume.</b> {html.escape(reference_text)} The objective panels are zoomed to the
trials; the reference point is marked by an arrow when it lies outside.</p>
<h2>Baselines</h2>
{baselines_html(reports)}
<div class="grid">{cells}</div>
<h2>Hypervolume</h2>
<div class="grid"><div class="cell">{_div(hypervolume_figure(histories, legends), "hypervolume")}</div></div>
<h2>Parameter importance (fANOVA on the Optuna study's own trials and distributions)</h2>
{_importance_html(importance_panels)}
<h2>Pareto-optimal runs (selected on validation, test metrics shown)</h2>
<div class="scroll">{table_html}</div>
<script>if (typeof Plotly === "undefined") document.getElementById("noplotly").hidden = false;</script>
</body></html>"""
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
