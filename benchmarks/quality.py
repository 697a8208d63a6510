"""Quality on real speech: UVAC and categorical UVAC under each recipe against K-means, GMM-EM
and labels-as-clusters, on the Free Spoken Digit recordings in ``../shared/data/fsdd``.

    python -m benchmarks.quality                      # the CPU budget stated in the README
    python -m benchmarks.quality --epochs 100 --seeds 10 --channels 16,32,64,128 --gru-hidden 128 \\
        --device cuda                                 # full length on a GPU

For each split scheme (``random``: seeded 80/10/10; ``group``: speaker-disjoint) it prints and
saves (Markdown + CSV under ``--out``):

* **Table I** (the papers' layout): ACC, NMI, ARI, silhouette / DBI / CHI with the
  representation they are computed on, mean ± std over ``--seeds`` seeds, on the TEST split;
  K-means and GMM-EM are fitted on the same train split in the same run.
* **Cost of a useful trial**: for each model and recipe, the first epoch whose VALIDATION
  accuracy reaches K-means' validation accuracy (same split, mean over the same seeds), per
  seed; "-" when the budget ended first.
* **Ablation** (random split): ``recommended`` with each of its stabilisers switched back to the
  paper's value in turn, ``--ablation-seeds`` seeds, test ACC and the difference to
  ``recommended``.

Runs are spread over ``--jobs`` worker processes with one torch thread each. Every run is
seeded; a run that fails or diverges is a row of the table with its status, never a crash.
Settings are chosen on validation (the recipes were chosen with validation accuracy); the
tables report the test split.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
BASELINES = (("kmeans", "K-means"), ("gmm", "GMM-EM"))
RECIPE_LABEL = {"paper": "paper", "paper-lr5e-3": "paper, lr 5e-3", "recommended": "recommended"}
MODEL_LABEL = {"uvac": "UVAC", "cat_uvac": "Cat. UVAC"}
ABLATION_GROUPS = (("lr_start", "lr_end"),)


@dataclass(frozen=True)
class Job:
    """One training run (or baseline fit): what a worker process needs, and nothing else."""

    kind: str  # "neural" | "baseline" | "labels"
    split: str
    seed: int
    config: dict = field(default_factory=dict)
    label: str = ""
    group: str = "main"  # "main" | "ablation"


# ------------------------------------------------------------------ worker side
_TABLES: dict[tuple[str, str], Any] = {}


def _table(cache_dir: str, split: str):
    """The cache's table with ``split`` as its train/val/test split (loaded once per process)."""
    key = (cache_dir, split)
    if key not in _TABLES:
        from features.cache import load_table

        _TABLES[key] = load_table(cache_dir, split_scheme=split)
    return _TABLES[key]


def run_job(job: Job, cache_dir: str) -> dict:
    """Train / fit one job; returns status, test metrics and the per-epoch validation accuracy."""
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    table = _table(cache_dir, job.split)
    try:
        if job.kind == "labels":
            from trainables.baselines import run_baseline

            out = run_baseline("labels", table, len(table.classes), job.seed)
            return {"status": "complete", "metrics": dict(out.metrics), "val_acc": [], "time_s": time.time() - t0}
        from trainables.loop import train

        res = train({**job.config, "seed": job.seed, "split_scheme": job.split}, table)
        val_acc = [h.get("val/acc", math.nan) for h in res.history]
        return {"status": res.status, "reason": res.reason, "metrics": dict(res.metrics), "val_acc": val_acc,
                "time_s": time.time() - t0}
    except Exception as exc:  # a failing run is a row of the table, not a crash of the benchmark
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "metrics": {}, "val_acc": [],
                "time_s": time.time() - t0}


# ------------------------------------------------------------------ planning
def plan_jobs(a: argparse.Namespace) -> list[Job]:
    from trainables.config import RECIPES

    common = {"epochs": a.epochs, "channels": a.channels, "gru_hidden": a.gru_hidden, "device": a.device,
              "checkpoint_every": 0}
    if a.batch_size:  # else each recipe's own
        common["batch_size"] = a.batch_size
    jobs: list[Job] = []
    for split in a.splits:
        for seed in range(a.seeds):
            jobs.append(Job("labels", split, seed, label="labels as clusters"))
            for method, label in BASELINES:
                jobs.append(Job("baseline", split, seed, {"model": method}, label))
            for model in a.models:
                for recipe in a.recipes:
                    cfg = {**common, "model": model, "recipe": recipe}
                    jobs.append(Job("neural", split, seed, cfg, f"{MODEL_LABEL[model]} ({RECIPE_LABEL[recipe]})"))
    if a.ablation_seeds > 0:
        from trainables.config import resolve_config

        for model in a.models:
            paper = resolve_config({"model": model, "recipe": "paper"})
            rec = resolve_config({"model": model, "recipe": "recommended"})
            keys = [k for k in RECIPES["recommended"][model] if paper[k] != rec[k]]
            # keys switched off together (the learning-rate schedule is one setting)
            groups = [g for g in ABLATION_GROUPS if set(g) <= set(keys)]
            singles = [(k,) for k in keys if not any(k in g for g in groups)]
            for group in [*singles, *groups]:
                off = {k: paper[k] for k in group}
                cfg = {**common, "model": model, "recipe": "recommended", **off}
                what = ", ".join(f"{k}={v}" for k, v in off.items())
                for seed in range(a.ablation_seeds):
                    jobs.append(Job("neural", "random", seed, cfg, f"{MODEL_LABEL[model]}: {what}", group="ablation"))
    return jobs


# ------------------------------------------------------------------ tables
def _rows_for(results: list[tuple[Job, dict]], split: str, group: str = "main") -> list[dict]:
    """Rows for :func:`analysis.tables.table_one`, in first-seen order of the labels."""
    rows: dict[str, dict] = {}
    for job, res in results:
        if job.split != split or job.group != group:
            continue
        model = job.config.get("model", "labels" if job.kind == "labels" else "")
        row = rows.setdefault(job.label, {"method": job.label, "model": model, "metrics": [], "n_runs": 0})
        row["n_runs"] += 1
        if res["status"] == "complete":
            row["metrics"].append(res["metrics"])
    return list(rows.values())


def epochs_to_reach(results: list[tuple[Job, dict]], split: str) -> list[dict]:
    """Per model/recipe: the first epoch at which validation ACC >= K-means' validation ACC."""
    km = [r["metrics"].get("val/acc", math.nan) for j, r in results
          if j.split == split and j.group == "main" and j.config.get("model") == "kmeans"]
    target = sum(km) / len(km) if km else math.nan
    out: dict[str, dict] = {}
    for job, res in results:
        if job.split != split or job.group != "main" or job.kind != "neural":
            continue
        hit = next((i + 1 for i, v in enumerate(res["val_acc"]) if v >= target), None)
        row = out.setdefault(job.label, {"Method": job.label, "K-means val ACC %": round(100 * target, 1),
                                         "epochs": [], "budget": job.config["epochs"], "best val ACC %": []})
        row["epochs"].append(hit)
        row["best val ACC %"].append(round(100 * max(res["val_acc"], default=math.nan), 1))
    rows = []
    for row in out.values():
        reached = [e for e in row["epochs"] if e is not None]
        rows.append({"Method": row["Method"], "K-means val ACC %": row["K-means val ACC %"],
                     "seeds reaching it": f"{len(reached)}/{len(row['epochs'])}",
                     "epochs (per seed)": ", ".join("-" if e is None else str(e) for e in row["epochs"]),
                     "best val ACC % (per seed)": ", ".join(str(v) for v in row["best val ACC %"]),
                     "budget (epochs)": row["budget"]})
    return rows


def ablation_rows(results: list[tuple[Job, dict]], models: list[str]) -> list[dict]:
    """``recommended`` and each stabiliser switched off: mean test ACC and the difference."""
    import numpy as np

    def acc(label: str, group: str, seeds: set[int] | None = None) -> list[float]:
        return [r["metrics"].get("test/acc", math.nan) * 100 for j, r in results
                if j.label == label and j.group == group and j.split == "random" and r["status"] == "complete"
                and (seeds is None or j.seed in seeds)]

    rows = []
    for model in models:
        base_label = f"{MODEL_LABEL[model]} (recommended)"
        abl = sorted({j.label for j, _ in results if j.group == "ablation" and j.config.get("model") == model})
        seeds = {j.seed for j, _ in results if j.group == "ablation" and j.config.get("model") == model}
        base = acc(base_label, "main", seeds)
        base_mean = float(np.mean(base)) if base else math.nan
        rows.append({"Setting": f"{base_label}, seeds {sorted(seeds)}", "test ACC %": round(base_mean, 1),
                     "difference": 0.0, "runs": len(base)})
        for label in abl:
            vals = acc(label, "ablation")
            m = float(np.mean(vals)) if vals else math.nan
            rows.append({"Setting": label.replace(f"{MODEL_LABEL[model]}: ", f"{MODEL_LABEL[model]}, off: "),
                         "test ACC %": round(m, 1), "difference": round(m - base_mean, 1), "runs": len(vals)})
    return rows


def _markdown(rows: list[dict]) -> str:
    """A Markdown table of dicts (same keys), numbers right-aligned."""
    if not rows:
        return "(none)"
    cols = list(rows[0])
    num = [all(isinstance(r.get(c), (int, float)) for r in rows) for c in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if n else "---" for n in num) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_report(results: list[tuple[Job, dict]], a: argparse.Namespace, header: str) -> str:
    """Print-ready Markdown of every table; CSV files beside it in ``a.out``."""
    import pandas as pd

    from analysis.tables import table_one, table_one_markdown

    a.out.mkdir(parents=True, exist_ok=True)
    # the raw results first: a failure below loses no run
    (a.out / "runs.json").write_text(json.dumps(
        [{"label": j.label, "kind": j.kind, "split": j.split, "seed": j.seed, "group": j.group, "config": j.config,
          **{k: v for k, v in r.items()}} for j, r in results], indent=1, default=str))
    parts = [header]
    for split in a.splits:
        df = table_one(_rows_for(results, split))
        df.to_csv(a.out / f"table1_{split}.csv", index=False)
        parts.append(table_one_markdown(df, title=f"### Table I, {split} split (test, mean ± std over seeds)"))
        reach = epochs_to_reach(results, split)
        pd.DataFrame(reach).to_csv(a.out / f"epochs_to_kmeans_{split}.csv", index=False)
        parts.append(f"### Epochs to reach K-means' accuracy, {split} split (validation)\n\n{_markdown(reach)}")
    if a.ablation_seeds > 0:
        abl = ablation_rows(results, a.models)
        pd.DataFrame(abl).to_csv(a.out / "ablation.csv", index=False)
        parts.append(f"### Ablation: recommended with each stabiliser switched off (random split, test)\n\n{_markdown(abl)}")
    failed = [(j, r) for j, r in results if r["status"] != "complete"]
    if failed:
        parts.append("### Runs that did not complete\n\n" + "\n".join(
            f"- {j.label}, {j.split} split, seed {j.seed}: {r['status']} {r.get('reason', '')}" for j, r in failed))
    text = "\n\n".join(parts) + "\n"
    (a.out / "quality.md").write_text(text)
    return text


# ------------------------------------------------------------------ command line
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="FSDD root (recordings/ inside)")
    p.add_argument("--features-out", type=Path, default=Path("runs/features"), help="where the cache goes")
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks/quality"), help="tables go here")
    p.add_argument("--preset", default="audiomnist", help="front end (default: the UVAC paper's)")
    p.add_argument("--limit", type=int, default=0, help="use at most this many clips (0 = all 2,000)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--ablation-seeds", type=int, default=1, help="0 = no ablation")
    p.add_argument("--splits", default="random,group", help="random and/or group (speaker-disjoint)")
    p.add_argument("--models", default="uvac,cat_uvac")
    p.add_argument("--recipes", default="paper,recommended")
    p.add_argument("--channels", default="8,16,32,64", help="encoder channels (papers: 16,32,64,128)")
    p.add_argument("--gru-hidden", type=int, default=64, help="GRU units (papers: 128)")
    p.add_argument("--batch-size", type=int, default=0, help="0 = the recipe's (papers: 64)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    p.add_argument("--smoke-test", action="store_true", help="tiny: 120 clips, 1 epoch, 1 seed, no ablation")
    p.add_argument("--tables-from", type=Path, metavar="RUNS_JSON",
                   help="re-render the tables from a previous run's runs.json (no training)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.smoke_test:
        a.limit, a.epochs, a.seeds, a.ablation_seeds = 120, 1, 1, 0
    a.splits = [s for s in a.splits.split(",") if s]
    a.models = [m for m in a.models.split(",") if m]
    a.recipes = [r for r in a.recipes.split(",") if r]
    from trainables.config import RECIPES

    bad = [m for m in a.models if m not in MODEL_LABEL] + [r for r in a.recipes if r not in RECIPES] + \
          [s for s in a.splits if s not in ("random", "group")]
    if bad:
        print(f"error: unknown model / recipe / split: {', '.join(bad)}", file=sys.stderr)
        return 2
    if a.ablation_seeds > 0 and "recommended" not in a.recipes:
        a.ablation_seeds = 0
    if a.tables_from:
        saved = json.loads(a.tables_from.read_text())
        results = [(Job(r["kind"], r["split"], r["seed"], r["config"], r["label"], r["group"]),
                    {k: r[k] for k in ("status", "reason", "metrics", "val_acc", "time_s") if k in r}) for r in saved]
        a.splits = [s for s in a.splits if any(j.split == s for j, _ in results)]
        print(write_report(results, a, f"Tables re-rendered from {a.tables_from}"))
        return 0
    if not (a.root / "recordings").is_dir():
        print(f"error: {a.root} has no recordings/ folder (FSDD layout)", file=sys.stderr)
        return 2

    from features.build import scan
    from features.cache import build_cache
    from features.frontend import get_preset

    summary = build_cache(scan("fsdd", a.root, a.features_out, 0), get_preset(a.preset), a.features_out,
                          limit=a.limit or None, progress=False)
    cache_dir = str(summary.cache_dir)
    jobs = plan_jobs(a)
    header = (f"Quality on real speech: FSDD ({summary.n_used} clips, 4 speakers, preset {a.preset}, "
              f"{summary.shape[0]} x {summary.shape[1]}), {a.epochs} epochs, {a.seeds} seed(s), channels "
              f"{a.channels}, GRU {a.gru_hidden}, batch {a.batch_size or 'of the recipe'}, device {a.device}\n\n"
              f"Command: python -m benchmarks.quality {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(header, flush=True)
    print(f"{len(jobs)} runs on {a.jobs} worker(s); cache {cache_dir}", flush=True)
    t0 = time.time()
    results: list[tuple[Job, dict]] = []
    # neural runs first (longest), so that the pool stays busy to the end
    ordered = sorted(jobs, key=lambda j: (j.kind != "neural", j.group != "main"))
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        futures = {pool.submit(run_job, j, cache_dir): j for j in ordered}
        for fut in as_completed(futures):
            job, res = futures[fut], fut.result()
            results.append((job, res))
            acc = res["metrics"].get("test/acc", math.nan)
            print(f"[{len(results):3d}/{len(jobs)} {time.time() - t0:6.0f}s] {job.label:<40} {job.split:<6} "
                  f"seed {job.seed}: {res['status']:<9} test ACC {100 * acc:5.1f}%  ({res['time_s']:.0f} s)", flush=True)
    order = {id(j): i for i, j in enumerate(jobs)}
    results.sort(key=lambda jr: order[id(jr[0])])
    text = write_report(results, a, header + f"\n\nWall time: {(time.time() - t0) / 60:.1f} min on {os.cpu_count()} CPU(s)")
    print()
    print(text)
    print(f"tables written to {a.out}/")
    return 0 if all(r["status"] != "failed" for _, r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
