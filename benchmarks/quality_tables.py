"""The tables of ``benchmarks.quality``: Table I, the strongest baseline and every model's margin
over it, the epochs a model needs to reach it, and the ablation. Pure functions of the results
(``[(Job, result dict)]``, benchmarks.quality_runs), so ``--tables-from runs.json`` re-renders them
without training."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from trainables.status import TrialStatus

__all__ = ["baseline_rows", "baseline_summary", "strongest_baseline", "margin_rows", "epochs_to_reach", "ablation_rows",
           "markdown"]


def markdown(rows: list[dict]) -> str:
    """A Markdown table of dicts (same keys), numbers right-aligned."""
    if not rows:
        return "(none)"
    cols = list(rows[0])
    num = [all(isinstance(r.get(c), (int, float)) for r in rows) for c in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if n else "---" for n in num) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _mean(vals: list[float]) -> float:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def _pm(vals: list[float]) -> str:
    vals = [100 * v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    return f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0.0:.2f}"


def baseline_rows(results: list[tuple[Any, dict]], split: str) -> dict[str, dict]:
    """Every baseline of the suite jobs of ``split``: name -> {label, side_information, per seed metrics}."""
    out: dict[str, dict] = {}
    for job, res in results:
        if job.kind != "suite" or job.split != split or res["status"] != TrialStatus.COMPLETE:
            continue
        for row in res["rows"]:
            b = out.setdefault(row["name"], {"label": row["label"], "side_information": row["side_information"],
                                             "seeds": {}})
            b["seeds"][job.seed] = row["metrics"]
    return out


def baseline_summary(results: list[tuple[Any, dict]], split: str) -> list[dict]:
    """One row per baseline of ``split``: validation and test ACC (mean ± std over seeds), whether it
    uses speaker ids, the strongest marked (chosen on validation: with and without speaker ids)."""
    baselines = baseline_rows(results, split)
    best = strongest_baseline(baselines)
    best_side = strongest_baseline(baselines, side_information=True)
    rows = []
    for name, b in baselines.items():
        mark = " **(strongest)**" if name == best else (" (strongest with speaker ids)" if name == best_side else "")
        rows.append({"baseline": f"`{name}`{mark}", "what": b["label"],
                     "speaker ids": "yes" if b["side_information"] else "no",
                     "val ACC %": _pm([m.get("val/acc") for m in b["seeds"].values()]),
                     "test ACC %": _pm([m.get("test/acc") for m in b["seeds"].values()])})
    return rows


def strongest_baseline(baselines: dict[str, dict], *, side_information: bool = False) -> str | None:
    """The baseline with the highest mean validation accuracy among those without side information,
    or (``side_information``) among those that use speaker ids: the comparison for a model on
    speaker-normalised features is the classical pipeline with the same normalisation."""
    from trainables.baseline_suite import strongest_name

    return strongest_name(((n, _mean([m.get("val/acc") for m in b["seeds"].values()]), b["side_information"])
                           for n, b in baselines.items()), side_information=side_information)


def margin_rows(results: list[tuple[Any, dict]], split: str, group: str = "main",
                side_information: bool = False) -> tuple[list[dict], str | None]:
    """Per model: validation and test ACC (mean ± std; the final epoch's), the strongest baseline's
    in the same run, the test margin in points (mean difference over the seeds both have), on how
    many seeds the model is above, and the validation margin (what a setting is chosen on)."""
    baselines = baseline_rows(results, split)
    best = strongest_baseline(baselines, side_information=side_information)
    if best is None:
        return [], None
    base = {s: m.get("test/acc") for s, m in baselines[best]["seeds"].items()}
    base_val = {s: m.get("val/acc") for s, m in baselines[best]["seeds"].items()}
    rows = [{"Method": f"{baselines[best]['label']} = `{best}` (strongest"
                       f"{', speaker ids' if baselines[best]['side_information'] else ''})",
             "val ACC %": _pm(list(base_val.values())), "test ACC %": _pm(list(base.values())),
             "margin (points)": 0.0, "seeds above": "-", "val margin (points)": 0.0}]
    labels: dict[str, dict[int, float]] = {}
    vals: dict[str, dict[int, float]] = {}
    for job, res in results:
        if job.kind == "neural" and job.split == split and job.group == group:
            done = res["status"] == TrialStatus.COMPLETE
            labels.setdefault(job.label, {})[job.seed] = res["metrics"].get("test/acc") if done else None
            vals.setdefault(job.label, {})[job.seed] = res["metrics"].get("val/acc") if done else None
    for label, accs in labels.items():
        paired = [(a, base[s]) for s, a in accs.items() if a is not None and base.get(s) is not None]
        margin = _margin(paired)
        rows.append({"Method": label, "val ACC %": _pm(list(vals[label].values())),
                     "test ACC %": _pm(list(accs.values())),
                     "margin (points)": margin, "seeds above": f"{sum(a > b for a, b in paired)}/{len(accs)}",
                     "val margin (points)": _margin([(v, base_val[s]) for s, v in vals[label].items()
                                                     if v is not None and base_val.get(s) is not None])})
    return rows, best


def _margin(paired: list[tuple[float, float]]) -> float | str:
    """Mean difference in points of (model, baseline) pairs, rounded; ``-`` when there is none."""
    margin = 100 * _mean([a - b for a, b in paired]) if paired else math.nan
    return round(margin, 2) if math.isfinite(margin) else "-"


def main_uses_speaker_ids(results: list[tuple[Any, dict]], split: str) -> bool:
    """Whether every model of the main group of ``split`` trains on a front end that uses the speaker
    ids (``--frontend awe_speaker``): its margins are then measured against the strongest baseline
    that uses them too."""
    from features.frontend import get_preset

    fronts = {j.frontend for j, _ in results if j.kind == "neural" and j.split == split and j.group == "main"}
    return bool(fronts) and all(f and get_preset(f).side_information for f in fronts)


def epochs_to_reach(results: list[tuple[Any, dict]], split: str, side_information: bool = False) -> list[dict]:
    """Per model: the first epoch at which validation ACC >= the strongest baseline's validation ACC."""
    baselines = baseline_rows(results, split)
    best = strongest_baseline(baselines, side_information=side_information)
    if best is None:
        return []
    target = _mean([m.get("val/acc") for m in baselines[best]["seeds"].values()])
    out: dict[str, dict] = {}
    for job, res in results:
        if job.split != split or job.group != "main" or job.kind != "neural":
            continue
        hit = next((i + 1 for i, v in enumerate(res["val_acc"]) if v >= target), None)
        row = out.setdefault(job.label, {"epochs": [], "best": [], "budget": job.config["epochs"]})
        row["epochs"].append(hit)
        row["best"].append(round(100 * max(res["val_acc"], default=math.nan), 1))
    return [{"Method": label, f"target: {best} val ACC %": round(100 * target, 1),
             "seeds reaching it": f"{sum(e is not None for e in r['epochs'])}/{len(r['epochs'])}",
             "epochs (per seed)": ", ".join("-" if e is None else str(e) for e in r["epochs"]),
             "best val ACC % (per seed)": ", ".join(str(v) for v in r["best"]), "budget (epochs)": r["budget"]}
            for label, r in out.items()]


def ablation_rows(results: list[tuple[Any, dict]], model_labels: dict[str, str]) -> list[dict]:
    """``recommended`` and each of its settings switched off: validation and test ACC over the
    ablation seeds, and the differences to ``recommended`` on the same seeds (a setting is kept
    on its validation difference; the test difference is what it is reported with)."""
    def accs(label: str, group: str, split_name: str, seeds: set[int] | None = None) -> dict[int, float]:
        return {j.seed: r["metrics"].get(f"{split_name}/acc", math.nan) for j, r in results
                if j.label == label and j.group == group and j.split == "random" and r["status"] == TrialStatus.COMPLETE
                and (seeds is None or j.seed in seeds)}

    def diff(vals: dict[int, float], base: dict[int, float]):
        d = [vals[s] - base[s] for s in vals if s in base]
        return round(100 * _mean(d), 2) if d else "-"

    rows = []
    for model, name in model_labels.items():
        base_label = f"{name} (recommended)"
        abl = sorted({j.label for j, _ in results if j.group == "ablation" and j.config.get("model") == model})
        seeds = {j.seed for j, _ in results if j.group == "ablation" and j.config.get("model") == model}
        if not abl:
            continue
        base = {sp: accs(base_label, "main", sp, seeds) for sp in ("val", "test")}
        rows.append({"Setting": f"{base_label}, seeds {sorted(seeds)}", "val ACC %": _pm(list(base["val"].values())),
                     "test ACC %": _pm(list(base["test"].values())), "val difference (points)": 0.0,
                     "difference (points)": 0.0, "runs": len(base["test"])})
        for label in abl:
            vals = {sp: accs(label, "ablation", sp) for sp in ("val", "test")}
            rows.append({"Setting": label.replace(f"{name}: ", f"{name}, off: "),
                         "val ACC %": _pm(list(vals["val"].values())), "test ACC %": _pm(list(vals["test"].values())),
                         "val difference (points)": diff(vals["val"], base["val"]),
                         "difference (points)": diff(vals["test"], base["test"]), "runs": len(vals["test"])})
    return rows
