"""The papers' Table I layout: one row per method, mean ± std over seeds on the TEST split.

Columns: ``Method``, ``Repr.`` (the representation the clustering metrics are computed on:
``z`` latent mean, ``y`` categorical probabilities, ``x`` input features), ``Seeds`` (seeds
that completed / seeds run), ``ACC %``, ``NMI``, ``ARI``, ``Silhouette``, ``DBI``, ``CHI x1e3``.
Means and sample standard deviations (ddof=1; 0 for a single seed) over the completed
seeds; NaN values (a collapsed clustering) are left out of the mean and counted in a
footnote.

:func:`table_one` is pure (metric dicts in, DataFrame out); :func:`table_one_markdown`
formats it.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

# column label -> (metric family, scale, uses a representation suffix)
COLUMNS = [
    ("ACC %", "acc", 100.0, False),
    ("NMI", "nmi", 1.0, False),
    ("ARI", "ari", 1.0, False),
    ("Silhouette", "silhouette", 1.0, True),
    ("DBI", "dbi", 1.0, True),
    ("CHI x1e3", "chi", 1e-3, True),
]

DEFAULT_REPR = {"cat_uvac": "y", "uvac": "z", "kmeans": "x", "gmm": "x", "labels": "x"}


def pick_representation(metrics_list: Sequence[dict], model: str, split: str = "test",
                        wanted: Optional[str] = None) -> str:
    """The representation suffix for the clustering metrics of a row: ``wanted`` if given,
    else the model's default (cat_uvac -> y, uvac -> z, baselines -> x), else the first
    one present in the metrics."""
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
    (seeds attempted) and optional ``representation``.

    Returns one row per method with numeric ``<col> mean`` / ``<col> std`` columns, ``n``
    columns per metric, and the formatted ``<col>`` text "mean ± std"."""
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
            row[label] = format_mean_std(row[f"{label} mean"], row[f"{label} std"], decimals(label))
        out.append(row)
    return pd.DataFrame(out)


def decimals(label: str) -> int:
    return 2


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
    lines.append("")
    lines.append("Mean ± sample std (ddof=1) over the seeds that completed, on the test split. "
                 "Repr.: representation of the silhouette / DBI / CHI (z latent mean, y categorical, "
                 "x input features).")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def table_one_csv(df: pd.DataFrame) -> pd.DataFrame:
    """The CSV layout: formatted columns plus the numeric mean / std / n columns."""
    return df
