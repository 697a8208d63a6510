"""Early stopping in a study: the same study under fifo, asha and moasha.

    .venv/bin/python -m benchmarks.study [--space cat_uvac] [--dataset synthetic] [--root DIR]
        [--limit 240] [--trials 12] [--epochs 4] [--concurrent 2] [--seeds 0] [--out runs/bench-study]
        [--smoke-test]

Each scheduler runs the same study (space, sampler seed, trials, epochs, concurrency, the
default objectives of the space) in its own Optuna storage, MLflow store and Ray directory
under ``--out``: ``fifo`` (no early stopping), ``asha`` (ASHA on the first objective only)
and ``moasha`` (study.schedulers.MOASHAScheduler, every objective). Networks are the CPU demo
size (study.options.EMBEDDED_SMALL); the feature cache is built once under ``--out/features``.

Per run, read back from Optuna and MLflow: trials complete/pruned, trial-epochs spent (epochs
reported by every trial, pruned ones included), wall time, and the hypervolume of the final
front of the completed trials (study.pareto.hypervolume), all against ONE reference point:
study.pareto.reference_point of the objectives (the fixed worst end of each metric's range,
e.g. -1 for a silhouette, 0 for an accuracy), the same for every run and seed.

"moasha epochs to fifo HV": moasha's completed trials are walked in completion order; at each,
the trial-epochs the study had spent so far (every epoch report of every trial, from MLflow's
metric timestamps, up to that completion) and the hypervolume of the front so far. The first
point whose hypervolume reaches fifo's final one gives the ratio of those trial-epochs to
fifo's total; "not reached" when moasha's front never gets there.

The results are written to ``--out/results.json`` before the table is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from study.tags import PARENT_RUN_TAG, TRIAL_NUMBER_TAG
from trainables.status import TrialStatus

SCHEDULERS = ("fifo", "asha", "moasha")
TINY = {"channels": "4,8,8,8", "gru_hidden": 8, "batch_size": 64, "silhouette_sample": 200}


def build_features(dataset: str, root, limit: int, out: Path) -> str:
    """The benchmark's feature cache (built once, reused by every run)."""
    from features.cache import find_cache_dirs

    target = out / "features" / f"{dataset}-{limit}"
    found = find_cache_dirs(target) if target.is_dir() else []
    if len(found) == 1:
        return str(found[0])
    cmd = [sys.executable, "-m", "features.build", "--dataset", dataset, "--out", str(target),
           "--limit", str(limit), "--no-progress"] + (["--root", str(root)] if root else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise SystemExit(f"error: feature build failed: {tail[-1] if tail else proc.returncode}")
    return str(find_cache_dirs(target)[0])


def run_one(scheduler: str, seed: int, features: str, a: argparse.Namespace) -> dict:
    """One study; returns its raw trials (values, epochs, times) for :func:`summarise`."""
    from study.engine import run_study
    from study.options import EMBEDDED_SMALL, StudyOptions
    from study.objectives import default_objectives

    base = Path(a.out, "runs", f"seed{seed}-{scheduler}").resolve()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    objectives = default_objectives(a.space)
    opts = StudyOptions(space=a.space, features=features, num_samples=a.trials, epochs=a.epochs,
                        max_concurrent=a.concurrent, scheduler=scheduler, objectives=objectives,
                        asha_metric=objectives[0] if scheduler == "asha" else None, seed=seed,
                        study_name=f"bench-{scheduler}-{seed}", storage=f"sqlite:///{base}/optuna.db",
                        tracking_uri=f"sqlite:///{base}/mlflow.db", storage_path=str(base / "ray"),
                        overrides=dict(TINY if a.smoke_test else EMBEDDED_SMALL), progress_every_s=1e9)
    t0 = time.time()
    res = run_study(opts)
    wall = time.time() - t0
    if res.interrupted:
        raise SystemExit(f"error: benchmark study {res.study_name} was interrupted")
    return {"scheduler": scheduler, "seed": seed, "wall_s": wall, "objectives": res.objectives,
            "counts": res.counts, "trials": _trials(res)}


def _trials(res) -> list[dict]:
    """Per trial: state, objective values, completion time, and its epoch reports' times."""
    import optuna
    from mlflow.tracking import MlflowClient

    client = MlflowClient(res.tracking_uri)
    exp = client.get_run(res.parent_run_id).info.experiment_id
    runs = {r.data.tags.get(TRIAL_NUMBER_TAG): r for r in client.search_runs(
        [exp], filter_string=f"tags.{PARENT_RUN_TAG} = '{res.parent_run_id}'")}
    out = []
    for t in optuna.load_study(study_name=res.study_name, storage=res.storage).get_trials(deepcopy=False):
        run = runs.get(str(t.number))
        epochs = {}  # epoch -> first time (s) it was reported
        if run is not None:
            for m in client.get_metric_history(run.info.run_id, "train/loss"):
                epochs[m.step] = min(epochs.get(m.step, m.timestamp / 1000), m.timestamp / 1000)
        out.append({"number": t.number, "state": t.state.name, "values": t.values,
                    "completed_at": t.datetime_complete.timestamp() if t.datetime_complete else None,
                    "epoch_times": sorted(epochs.values())})
    return out


def summarise(runs: list[dict]) -> list[dict]:
    """The table's rows for one seed's runs (one shared reference point)."""
    from study.pareto import hypervolume, reference_point

    directions = [o.split(":")[1] for o in runs[0]["objectives"]]
    ref = reference_point([o.split(":")[0] for o in runs[0]["objectives"]])
    complete = {r["scheduler"]: [t for t in r["trials"] if t["state"] == "COMPLETE"] for r in runs}
    hv = {s: (hypervolume(np.array([t["values"] for t in ts]), directions, ref) if ts else 0.0)
          for s, ts in complete.items()}
    rows = []
    for r in runs:
        s = r["scheduler"]
        spent = sum(len(t["epoch_times"]) for t in r["trials"])
        counts, shown = r["counts"], (TrialStatus.COMPLETE, TrialStatus.PRUNED)
        rows.append({"seed": r["seed"], "scheduler": s, **{k: counts[k] for k in shown},
                     "other": sum(v for k, v in counts.items() if k not in shown),
                     "trial_epochs": spent, "wall_s": round(r["wall_s"], 1), "hypervolume": hv[s],
                     "reference": [float(x) for x in ref]})
    by = {row["scheduler"]: row for row in rows}
    if "fifo" in by and "moasha" in by:
        moasha = next(r for r in runs if r["scheduler"] == "moasha")
        need = epochs_to_reach(moasha["trials"], directions, ref, by["fifo"]["hypervolume"])
        by["moasha"]["epochs_to_fifo_hv"] = need
        by["moasha"]["ratio_to_fifo"] = None if need is None else need / max(1, by["fifo"]["trial_epochs"])
    return rows


def epochs_to_reach(trials: list[dict], directions, ref, target: float):
    """Trial-epochs spent when the front of the completed trials first reaches ``target``
    hypervolume (trials walked in completion order), or None."""
    from study.pareto import hypervolume

    done = sorted((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: t["completed_at"])
    all_times = sorted(x for t in trials for x in t["epoch_times"])
    for k in range(1, len(done) + 1):
        hv = hypervolume(np.array([t["values"] for t in done[:k]]), directions, ref)
        if hv >= target * (1 - 1e-9):
            return sum(1 for x in all_times if x <= done[k - 1]["completed_at"])
    return None


def render(rows: list[dict]) -> str:
    complete, pruned = TrialStatus.COMPLETE, TrialStatus.PRUNED
    head = f"{'seed':>4}  {'scheduler':<9} {complete:>8} {pruned:>6} {'other':>5} {'trial-epochs':>12} " \
           f"{'wall s':>7} {'hypervolume':>11}  moasha epochs to fifo HV"
    lines = [head, "-" * len(head)]
    for r in rows:
        reach = ""
        if r["scheduler"] == "moasha" and "ratio_to_fifo" in r:
            reach = ("not reached" if r["ratio_to_fifo"] is None
                     else f"{r['epochs_to_fifo_hv']} ({r['ratio_to_fifo']:.2f} x fifo's)")
        lines.append(f"{r['seed']:>4}  {r['scheduler']:<9} {r[complete]:>8} {r[pruned]:>6} {r['other']:>5} "
                     f"{r['trial_epochs']:>12} {r['wall_s']:>7.0f} {r['hypervolume']:>11.4g}  {reach}")
    refs = sorted({tuple(r["reference"]) for r in rows})
    lines += [f"hypervolume reference point {list(ref)} (study.pareto.reference_point: the fixed worst "
              "end of each objective's range)" for ref in refs]
    return "\n".join(lines)


def _save(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.study", description=__doc__.split("\n")[0])
    p.add_argument("--space", default="cat_uvac")
    p.add_argument("--dataset", default="synthetic", help="synthetic (default) or e.g. fsdd with --root")
    p.add_argument("--root", help="the dataset's root (real data, e.g. /work/shared/data/fsdd)")
    p.add_argument("--limit", type=int, default=240, help="clips used (features.build --limit)")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--seeds", default="0", help="comma-separated sampler seeds")
    p.add_argument("--out", default="runs/bench-study")
    p.add_argument("--smoke-test", action="store_true", help="tiny: 120 clips, 4 trials x 2 epochs, tiny nets")
    a = p.parse_args(argv)
    if a.smoke_test:
        a.limit, a.trials, a.epochs = 120, 4, 2
    if a.trials < 1 or a.epochs < 2 or a.concurrent < 1 or a.limit < 20:
        p.error("need --trials >= 1, --epochs >= 2 (a rung below the last epoch), --concurrent >= 1, --limit >= 20")
    try:
        a.seed_list = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds {a.seeds!r}: expected comma-separated integers")
    return a


def main(argv=None) -> int:
    import ray

    from study.ray_runtime import init_ray

    a = parse_args(argv)
    from study.options import StudyError, StudyOptions
    try:  # bad --space / objectives: one clear error before any build or trial
        StudyOptions(space=a.space, num_samples=a.trials, epochs=a.epochs, scheduler="moasha").validate()
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    features = build_features(a.dataset, a.root, a.limit, out)
    # On a busy 2-core machine the raylet can miss the default 5 health checks in a row and be
    # declared dead mid-run; a benchmark run is not worth losing to that.
    os.environ.setdefault("RAY_health_check_failure_threshold", "40")
    init_ray(None, None)
    rows, raw = [], []
    results = {"args": vars(a), "features": features, "rows": rows, "runs": raw}
    try:
        for seed in a.seed_list:
            runs = []
            for s in SCHEDULERS:
                runs.append(run_one(s, seed, features, a))
                raw.append(runs[-1])
                _save(out, results)  # each finished run is kept, whatever happens next
            rows += summarise(runs)
    finally:
        ray.shutdown()
    _save(out, results)
    print(render(rows))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
