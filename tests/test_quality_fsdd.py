"""On real spoken digits (../shared/data/fsdd): the UVAC collapse at the UVAC paper's learning rate
is reproduced under the ``paper`` recipe and does not happen under ``recommended``.

Three epochs on the 1,600 training clips with a narrow network (tens of seconds on 2 CPU cores).
Quality figures themselves live in ``python -m benchmarks.quality``, not here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
NARROW = {"channels": "8,16,32,64", "gru_hidden": 64, "epochs": 3, "device": "cpu", "checkpoint_every": 0,
          "lr_start": 5e-3, "lr_end": 5e-4, "batch_size": 32, "seed": 0}


@pytest.fixture(scope="module")
def fsdd_table(tmp_path_factory):
    from features.build import scan
    from features.cache import build_cache, load_table
    from features.frontend import get_preset

    assert (FSDD / "recordings").is_dir(), f"the real FSDD recordings are expected at {FSDD}"
    out = tmp_path_factory.mktemp("fsdd")
    summary = build_cache(scan("fsdd", FSDD, out, 0), get_preset("audiomnist"), out, progress=False)
    return load_table(summary.cache_dir)


def test_uvac_at_lr_5e3_collapses_under_paper_and_not_under_recommended(fsdd_table):
    from trainables.loop import train

    paper = train({**NARROW, "model": "uvac", "recipe": "paper"}, fsdd_table)
    # the fault, reproduced: the decoder's sigmoid saturates, its output is all zeros
    # (reconstruction = sum of x^2 over the real bins) and every clip lands in one cluster
    x = fsdd_table.select("train").spectrogram.float()
    m = fsdd_table.select("train").mask[:, None, :]
    all_zero_recon = float(((x * x) * m).sum((1, 2)).mean())
    assert paper.history[-1]["train/recon"] == pytest.approx(all_zero_recon, rel=0.05)
    assert len(np.unique(paper.assignments["cluster"])) == 1

    rec = train({**NARROW, "model": "uvac", "recipe": "recommended", "prior_warmup_epochs": 2}, fsdd_table)
    assert rec.status == "complete", rec.reason
    recons = [h["train/recon"] for h in rec.history]
    assert recons[-1] < recons[0], recons  # the decoder keeps learning
    used = len(np.unique(rec.assignments["cluster"]))
    assert used > 5, f"recommended used {used} clusters"
    assert rec.history[-1]["val/n_clusters_used"] > 5
