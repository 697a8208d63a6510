"""Quality on real data: UVAC and categorical UVAC against K-means and GMM-EM on FSDD.

    python -m benchmarks.fsdd_quality --root ../shared/data/fsdd --epochs 10 [--seeds 1]

Builds (or reuses) the FSDD feature cache with the ``audiomnist`` front end, trains both
models on the speaker-disjoint split (``split_scheme=group``) for a short budget, runs the
baselines on the same clips, and prints the papers' Table I layout (test split, mean ± std
over seeds). Everything runs in this process, on the CPU unless ``--device cuda``; no Ray,
no MLflow. A short budget is far from the papers' 500 epochs: read the figures as a sanity
check of the pipeline on real recordings, not as a reproduction.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from analysis.replicate import baseline_one, train_one
from analysis.tables import table_one, table_one_markdown
from features.build import scan
from features.cache import build_cache
from features.frontend import get_preset

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--out", type=Path, default=Path("runs/features"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--channels", default="16,32,64,128", help="encoder channels (paper: 16,32,64,128)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)

    summary = build_cache(scan("fsdd", a.root, a.out, 0), get_preset("audiomnist"), a.out, progress=False)
    features = str(summary.cache_dir)
    print(f"features: {features} ({summary.n_used} clips, {summary.shape[0]} x {summary.shape[1]}, "
          f"{summary.n_rejected} rejected)")

    common = {"split_scheme": "group", "epochs": a.epochs, "batch_size": a.batch_size,
              "channels": a.channels, "device": a.device}
    rows = []
    for model in ("uvac", "cat_uvac"):
        results = []
        for seed in range(a.seeds):
            t0 = time.time()
            r = train_one({"model": model, **common}, features, seed)
            print(f"{model} seed {seed}: {r['status']} in {time.time() - t0:.0f} s {r['reason']}")
            if r["status"] != "failed":
                results.append(r["metrics"])
        rows.append({"method": model, "model": model, "metrics": results, "n_runs": a.seeds})
    for method, label in (("kmeans", "K-means"), ("gmm", "GMM-EM"), ("labels", "labels as clusters")):
        results = [baseline_one(method, features, 0, seed, "group")["metrics"] for seed in range(a.seeds)]
        rows.append({"method": label, "model": method, "metrics": results, "n_runs": a.seeds})

    print()
    print(table_one_markdown(table_one(rows),
                             title=f"FSDD (4 speakers), speaker-disjoint test split, {a.epochs} epochs"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
