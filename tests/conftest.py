"""Shared fixtures (stable; other test files may use them).

``tiny_cache``   session-scoped: a REAL feature cache (Parquet shards + manifest) built with
                 :func:`features.cache.build_cache` from the synthetic dataset (preset ``compact``,
                 64 x 32), limited to ``TINY_CLIPS`` clips. Returns a :class:`TinyCache` with
                 ``.dir`` (the cache directory, for ``load_table`` or ``--features``), ``.table``
                 (a :class:`features.table.FeatureTable`, random split; do not modify it in place)
                 and ``.scan`` (the :class:`features.datasets.base.DatasetScan`, whose records
                 carry the source WAV paths).
``tiny_table``   the cache's FeatureTable (session-scoped, shared: treat as read-only).
``tmpfs``        a function ``tmpfs(path, size="1m", read_only=False) -> Path``: a real tmpfs mounted
                 at ``path`` (a full or read-only disk), unmounted at teardown; the test skips,
                 with the reason, where mounting is not allowed (not root, no mount(8)).
``tiny_config``  a function ``tiny_config(**overrides) -> dict``: the REAL resolved default
                 config (:func:`trainables.config.resolve_config`) shrunk to a tiny network
                 (channels 4,8,8,8, GRU 8, d_z 4, batch 16, 2 epochs, CPU).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TINY_CLIPS = 60
TINY_OVERRIDES: dict[str, Any] = {
    "channels": "4,8,8,8",
    "gru_hidden": 8,
    "d_z": 4,
    "batch_size": 16,
    "epochs": 2,
    "device": "cpu",
    "silhouette_sample": 200,
    "checkpoint_every": 1,
}


# Constructor arguments of a tiny network for model-level unit tests (no config involved).
TINY_NET: dict[str, Any] = {"channels": (2, 3, 4, 4), "gru_hidden": 6}


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids oversubscription."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@dataclass
class TinyCache:
    dir: Path
    table: Any
    scan: Any


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> TinyCache:
    from features.build import scan
    from features.cache import build_cache, load_table
    from features.frontend import get_preset

    out = tmp_path_factory.mktemp("tiny_features")
    ds = scan("synthetic", None, out, 0)
    summary = build_cache(ds, get_preset("compact"), out, seed=0, limit=TINY_CLIPS, progress=False)
    cache_dir = Path(summary.cache_dir) if getattr(summary, "cache_dir", None) else out
    table = load_table(cache_dir)
    return TinyCache(dir=Path(cache_dir), table=table, scan=ds)


@pytest.fixture(scope="session")
def tiny_table(tiny_cache):
    return tiny_cache.table


@pytest.fixture
def tiny_config():
    from trainables.config import resolve_config

    def make(**overrides: Any) -> dict[str, Any]:
        partial = dict(TINY_OVERRIDES)
        partial.update(overrides)
        return resolve_config(partial)

    return make


@pytest.fixture
def tmpfs():
    mounted: list[Path] = []

    def mount(path: Path, size: str = "1m", read_only: bool = False) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a full or read-only disk needs a tmpfs mount: run as root with mount(8)")
        path.mkdir(parents=True, exist_ok=True)
        opts = f"size={size}" + (",ro" if read_only else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)
