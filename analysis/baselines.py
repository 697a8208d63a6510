"""The classical baselines a study logged on its MLflow parent run, read back generically.

Naming contract (docs/ARCHITECTURE.md, "MLflow layout"): a parent run holds one metric per
baseline method, split and metric, ``baseline/<method>_<split>_<metric>`` with split in
{val, test} (e.g. ``baseline/kmeans_val_acc``, ``baseline/awe_gmm_test_nmi``), and may carry
the tag ``baseline.strongest`` (the method with the highest validation accuracy). Nothing here
knows a method's name: every ``baseline/*`` metric that follows the pattern is read.

* :func:`parse_baselines` (pure) - parent metrics + tags -> :class:`Baselines`;
* :class:`Baselines` - ``values(metric)`` (method -> value for one study metric such as
  ``val/acc``), ``strongest`` (the tag when it names a method present, else the method with
  the highest ``val/acc``), ``beaten_by(metric, value)`` (does a value beat the strongest
  method's on that metric, with the metric's direction).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

from study.tags import BASELINE_METRIC_PREFIX, STRONGEST_TAG
from trainables.metrics import metric_direction

PREFIX = BASELINE_METRIC_PREFIX
# method (may hold "_": awe_kmeans, kmeans_std), split, metric (may hold "_": silhouette_x)
_NAME = re.compile(r"^(?P<method>[A-Za-z0-9.\-]+(?:_[A-Za-z0-9.\-]+)*?)_(?P<split>val|test)_(?P<metric>\w+)$")
SELECTION_METRIC = "val/acc"


def _direction(metric: str) -> Optional[str]:
    try:
        return metric_direction(metric)
    except ValueError:  # a metric without a known direction: shown, never compared
        return None


def parse_name(name: str) -> Optional[tuple[str, str]]:
    """``baseline/awe_kmeans_val_acc`` -> (``awe_kmeans``, ``val/acc``); None for any other name."""
    if not name.startswith(PREFIX):
        return None
    m = _NAME.match(name[len(PREFIX):])
    if not m:
        return None
    return m["method"], f"{m['split']}/{m['metric']}"


@dataclass
class Baselines:
    """method -> {study metric (``val/acc``, ``test/nmi``, ...) -> value}, finite values only."""

    by_method: dict = field(default_factory=dict)
    strongest_tag: str = ""

    def __bool__(self) -> bool:
        return bool(self.by_method)

    @property
    def methods(self) -> list[str]:
        return sorted(self.by_method)

    @property
    def metrics(self) -> list[str]:
        """Every metric some method logged, validation first."""
        return sorted({k for vals in self.by_method.values() for k in vals},
                      key=lambda k: (not k.startswith("val/"), k))

    def values(self, metric: str) -> dict[str, float]:
        """method -> value of ``metric`` (only the methods that logged it)."""
        return {m: v[metric] for m, v in sorted(self.by_method.items()) if metric in v}

    @property
    def strongest(self) -> Optional[str]:
        """The ``baseline.strongest`` tag when it names a logged method, else the method with the
        highest validation accuracy (None without any)."""
        if self.strongest_tag in self.by_method:
            return self.strongest_tag
        acc = self.values(SELECTION_METRIC)
        return max(acc, key=acc.get) if acc else None

    def reference(self, metric: str) -> Optional[tuple[str, float]]:
        """(method, value) a trial must beat on ``metric``: the strongest method's value when it
        logged this metric, else the best value of any method (with the metric's direction)."""
        vals = self.values(metric)
        if not vals:
            return None
        best, direction = self.strongest, _direction(metric)
        if direction is None:
            return None
        if best in vals:
            return best, vals[best]
        pick = max if direction == "max" else min
        m = pick(vals, key=vals.get)
        return m, vals[m]

    def beats(self, metric: str, value) -> Optional[bool]:
        """Does ``value`` beat :meth:`reference` on ``metric``? None when nothing to compare."""
        ref = self.reference(metric)
        if ref is None or value is None or not math.isfinite(float(value)):
            return None
        return float(value) > ref[1] if _direction(metric) == "max" else float(value) < ref[1]

    def to_dict(self) -> dict:
        return {"methods": {m: dict(sorted(v.items())) for m, v in sorted(self.by_method.items())},
                "strongest": self.strongest}


def parse_baselines(metrics: dict, tags: Optional[dict] = None) -> Baselines:
    """Every ``baseline/<method>_<split>_<metric>`` among a parent run's ``metrics`` (latest
    values); a non-finite value is left out."""
    out: dict[str, dict] = {}
    for name, value in (metrics or {}).items():
        parsed = parse_name(name)
        if parsed is None:
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.setdefault(parsed[0], {})[parsed[1]] = v
    return Baselines(out, str((tags or {}).get(STRONGEST_TAG, "")))


def method_label(method: str) -> str:
    """``kmeans`` -> "K-means", ``awe_gmm`` -> "AWE GMM": for legends and tables."""
    words = {"kmeans": "K-means", "gmm": "GMM", "awe": "AWE", "std": "std", "pca": "PCA", "mfcc": "MFCC"}
    return " ".join(words.get(w, w) for w in method.split("_"))
