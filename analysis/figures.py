"""Drawing only (matplotlib PNGs): every number drawn here (fronts, staircases, reference
points, baselines, hypervolumes, importances) is computed by study.pareto /
analysis.importance / analysis.baselines / analysis.report. The interactive page is
:mod:`analysis.page`.

* :data:`METRIC_NAMES` / :func:`metric_label` / :func:`axis_label` - the one table that spells
  metric names out ("val/dbi_z" -> "Davies-Bouldin index on z (latent mean)", with
  "validation, lower is better" on axes; directions from ``trainables.metrics``).
* :func:`scatter_grid_png` (:func:`scatter_grid_figure`) - scatter panels, each titled: one
  colour per study, each study's 2-D front of the plotted pair drawn as a STAIRCASE (the
  boundary of the region it dominates; a diagonal between two front points would show a
  trade-off no trial reached), the runs on the study's own Pareto front ringed and labelled
  with their trial numbers, the study's classical baselines as dashed / dotted reference lines
  on every axis that has one (the strongest emphasised) and a star on each front trial that
  beats them; on the panels of the objectives themselves, the axes zoomed to the trials
  (:func:`panel_limits`), the fixed hypervolume reference point as an arrow when outside them,
  and the dominated region (shaded, its area is the hypervolume).
* :func:`hypervolume_png` - hypervolume after each completed trial, per study.
* :func:`importance_png` (:func:`importance_figure`) - one panel per study and objective
  (fANOVA), with its trial count; one line per panel that could not be rated.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

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


def rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _mpl():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _wrap(text: str, width: int = 60) -> str:
    return "\n".join(textwrap.fill(line, width) for line in text.splitlines())


GOLD = "#e6a000"


def _finite(values) -> np.ndarray:
    v = np.asarray(values, float)
    return v[np.isfinite(v)]


def _padded(values: np.ndarray, frac: float = 0.08) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    pad = frac * span if span > 0 else max(0.05 * abs(hi), 0.02)
    return lo - pad, hi + pad


def panel_limits(panel: dict) -> Optional[tuple[tuple[float, float], tuple[float, float]]]:
    """(xlim, ylim) of a panel zoomed to its trials and baseline lines (never to the
    hypervolume reference point, which is then shown as an arrow); None without a finite point."""
    xs = np.concatenate([_finite(s["x"]) for s in panel["series"]] or [np.zeros(0)])
    ys = np.concatenate([_finite(s["y"]) for s in panel["series"]] or [np.zeros(0)])
    if not len(xs) or not len(ys):
        return None
    xs = np.r_[xs, [b["value"] for b in panel.get("baselines", []) if b["axis"] == "x"]]
    ys = np.r_[ys, [b["value"] for b in panel.get("baselines", []) if b["axis"] == "y"]]
    return _padded(xs), _padded(ys)


def reference_arrow(ref, limits) -> Optional[tuple[tuple[float, float], tuple[float, float]]]:
    """Where the reference point lies in axes fractions (tip, clipped to the frame) and where
    the arrow pointing at it starts (inside the panel); None when the point is in view."""
    (x0, x1), (y0, y1) = limits
    fx, fy = (ref[0] - x0) / (x1 - x0), (ref[1] - y0) / (y1 - y0)
    if 0 <= fx <= 1 and 0 <= fy <= 1:
        return None
    tip = (min(max(fx, 0.0), 1.0), min(max(fy, 0.0), 1.0))
    tail = tuple(t + (0.16 if t < 0.5 else -0.16) for t in tip)
    return tip, tail


def _draw_reference(ax, ref, limits) -> None:
    text = f"reference ({fmt(float(ref[0]))}, {fmt(float(ref[1]))})"
    arrow = reference_arrow(ref, limits) if limits else None
    if arrow is None:
        ax.scatter([ref[0]], [ref[1]], marker="X", s=80, color="black", zorder=5, gid="reference")
        ax.annotate(text, (ref[0], ref[1]), textcoords="offset points", xytext=(6, 6), fontsize=7)
        return
    tip, tail = arrow
    ax.annotate(text + "\noutside the zoomed axes", xy=tip, xytext=tail, xycoords="axes fraction",
                textcoords="axes fraction", fontsize=7, ha="left" if tail[0] < 0.5 else "right",
                va="bottom" if tail[1] < 0.5 else "top", gid="reference-arrow",
                arrowprops=dict(arrowstyle="->", color="black", lw=1.2))


def _draw_baselines(ax, lines: Sequence[dict]) -> None:
    """Dashed reference lines, the strongest method's darker and thicker, each labelled."""
    import matplotlib.transforms as mtransforms
    for k, b in enumerate(lines):
        style = dict(color="black" if b["strongest"] else "0.45", lw=1.8 if b["strongest"] else 1.0,
                     ls="--" if b["strongest"] else ":", zorder=2, gid=f"baseline:{b['method']}:{b['metric']}")
        label = ("strongest baseline: " if b["strongest"] else "") + b["label"]
        if b["axis"] == "y":
            ax.axhline(b["value"], **style)
            tr = mtransforms.blended_transform_factory(ax.transAxes, ax.transData)
            ax.text(0.99, b["value"], label, transform=tr, ha="right", va="bottom", fontsize=7,
                    color=style["color"], gid="baseline-label")
        else:
            ax.axvline(b["value"], **style)
            tr = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
            ax.text(b["value"], 0.99 - 0.07 * k, label, transform=tr, ha="right", va="top", rotation=0,
                    fontsize=7, color=style["color"], gid="baseline-label",
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=1))


def _draw_series(ax, panel: dict, i: int, s: dict) -> None:
    ref = panel.get("reference")
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
    beats = np.asarray(s.get("beats", np.zeros(len(x), bool)), bool) & p
    if beats.any():
        ax.scatter(x[beats], y[beats], s=170, marker="*", facecolor=GOLD, edgecolor="black", lw=0.6, zorder=5,
                   gid="beats-baseline")
    for j in np.flatnonzero(p):
        ax.annotate(str(s["trials"][j]), (x[j], y[j]), textcoords="offset points", xytext=(5, 5), fontsize=7,
                    color=c, zorder=6, gid="trial-label")


def _draw_panel(ax, panel: dict) -> None:
    ref = panel.get("reference")
    for i, s in enumerate(panel["series"]):
        _draw_series(ax, panel, i, s)
    _draw_baselines(ax, panel.get("baselines", []))
    limits = panel_limits(panel)  # the trials and the baselines, never the reference point
    if limits:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
    if ref is not None:
        _draw_reference(ax, ref, limits)
    ax.set_title(_wrap(panel["title"], 62), fontsize=9)
    ax.set_xlabel(axis_label(panel["x"]), fontsize=8)
    ax.set_ylabel(axis_label(panel["y"]), fontsize=8)
    ax.grid(alpha=0.3)


def _legend(fig, axes, panels, height: float) -> None:
    from matplotlib.lines import Line2D
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if any(b["strongest"] for p in panels for b in p.get("baselines", [])):
        handles.append(Line2D([], [], color="black", ls="--", lw=1.8))
        labels.append("strongest baseline (others dotted)")
    if any(np.asarray(s.get("beats", []), bool).any() for p in panels for s in p["series"]):
        handles.append(Line2D([], [], marker="*", ls="", ms=11, markerfacecolor=GOLD, markeredgecolor="black"))
        labels.append("front trial beating the baseline")
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.01, 1 - 0.42 / height),
               ncol=min(6, len(labels)), frameon=False, fontsize=8)


def _note(panels) -> str:
    note = ("Dots: completed trials. Steps: each study's 2-D front of the plotted pair. Rings: the study's "
            "Pareto front on its own objectives, labelled with their trial numbers.")
    if any(p.get("baselines") for p in panels):
        note += (" Dashed / dotted lines: the classical baselines logged by the study (same split); a star: a "
                 "front trial that beats the strongest one.")
    if any(p.get("reference") is not None for p in panels):
        note += " Axes zoomed to the trials; the fixed hypervolume reference point is marked (arrow when outside)."
    if any(p.get("shade") for p in panels):
        note += " Shaded: the region the front dominates (its area is the hypervolume)."
    return note


def scatter_grid_figure(panels: Sequence[dict], title: str):
    """The matplotlib Figure of :func:`scatter_grid_png` (not saved, not closed): tests read its
    artists (gids ``baseline:<method>:<metric>``, ``trial-label``, ``beats-baseline``,
    ``reference-arrow``)."""
    plt = _mpl()
    n = len(panels)
    cols = 2 if n == 4 else min(3, n)
    rows = math.ceil(n / cols)
    width, height = max(5.2 * cols, 7.0), 4.6 * rows + 1.3
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(ax, panel)
    fig.suptitle(title, x=0.01, y=1 - 0.12 / height, ha="left", va="top", fontsize=11)
    _legend(fig, axes, panels, height)
    fig.text(0.01, 0.005, _wrap(_note(panels), int(width * 17)), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.55 / height, 1, 1 - 0.55 / height))
    return fig


def scatter_grid_png(panels: Sequence[dict], path: Path, title: str) -> Optional[Path]:
    """``panels``: dicts with ``x``, ``y`` (metric names), ``title``, ``reference`` ((x, y) or
    None: with one, the axes zoom to the data), ``baselines`` (analysis.report.baseline_lines)
    and ``series``: one per study with ``study``, ``x`` [N], ``y`` [N], ``trials`` [N],
    ``steps`` [K, 2] (staircase vertices), ``pareto`` (mask [N] of the study's own front) and
    ``beats`` (mask [N]: front trials beating the baselines); ``shade``: fill the region under
    the steps (two objectives: its area is the hypervolume)."""
    if not panels:
        return None
    plt = _mpl()
    fig = scatter_grid_figure(panels, title)
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


IMPORTANCE_TITLE = "Parameter importance per objective (fANOVA on the Optuna study's trials)"


def _importance_notes_figure(panels: Sequence[dict]):
    """No panel rated: one line per panel saying why, in a figure only as tall as the lines."""
    plt = _mpl()
    fig = plt.figure(figsize=(9.5, 0.55 + 0.28 * len(panels)))
    fig.text(0.01, 1 - 0.18 / fig.get_figheight(), IMPORTANCE_TITLE, fontsize=11, va="top")
    for k, panel in enumerate(panels):
        fig.text(0.01, 1 - (0.5 + 0.28 * k) / fig.get_figheight(),
                 f"{panel['title'].splitlines()[0]}: {panel['note']}", fontsize=8, va="top", gid="importance-note")
    return fig


def importance_figure(panels: Sequence[dict], cols: int):
    """The Figure of :func:`importance_png`; a panel with a ``note`` says it in one line."""
    if all(p.get("note") for p in panels):
        return _importance_notes_figure(panels)
    plt = _mpl()
    cols = max(1, min(cols, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows + 0.5), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.suptitle(IMPORTANCE_TITLE, x=0.01, ha="left", fontsize=11)
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(panel["title"], fontsize=9)
        if panel.get("note"):
            ax.text(0.5, 0.5, panel["note"], ha="center", va="center", fontsize=7, transform=ax.transAxes,
                    gid="importance-note")
            ax.axis("off")
            continue
        names, vals = list(panel["values"]), list(panel["values"].values())
        ax.barh(np.arange(len(names)), vals, color=COLOURS[0])
        ax.set_yticks(np.arange(len(names)))
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (fANOVA, sums to 1)", fontsize=8)
    fig.tight_layout()
    return fig


def importance_png(panels: Sequence[dict], path: Path, cols: int) -> Path:
    """``panels``: dicts with ``title`` and either ``values`` (param -> importance) or ``note``
    (one line: why it was not rated); ``cols`` per row (one row per study: its number of
    objectives)."""
    plt = _mpl()
    fig = importance_figure(panels, cols)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
