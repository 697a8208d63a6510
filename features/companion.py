"""The same clips under another front end: the cache a reference baseline is fitted on.

A study or a benchmark compares its models with classical baselines that need their own front end
(the acoustic-word-embedding MFCCs of ``awe``). :func:`companion_cache` builds (or updates, cheaply
when nothing changed) the cache of exactly the clips of an existing cache (their ids, paths,
labels and groups, read from its shards) under another preset, in ``companions/`` next to it and with
the same split seed. Nothing is re-scanned, so it works for any dataset, ``--limit`` included.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from features.builder import build_cache
from features.datasets.base import AudioRecord, DatasetScan
from features.loader import read_shards, resolve_cache_dir
from features.manifest import read_manifest
from features.presets import Preset
from features.store import CacheError

__all__ = ["COMPANIONS", "cached_records", "companion_cache"]

COMPANIONS = "companions"


def cached_records(cache_dir: Path | str) -> DatasetScan:
    """The records (id, path, label, group) of the rows of a cache, as a scan of its dataset."""
    cache_dir = resolve_cache_dir(cache_dir)
    m = read_manifest(cache_dir)
    if m is None:
        raise CacheError(f"{cache_dir}: no manifest; rerun python -m features.build")
    tab = read_shards(cache_dir, m.shards, ["id", "label", "group", "path"])
    cols = {k: np.asarray(tab[k].to_pylist(), dtype=object).astype(str) for k in ("id", "label", "group", "path")}
    recs = [AudioRecord(i, Path(p), lab, g)
            for i, p, lab, g in zip(cols["id"], cols["path"], cols["label"], cols["group"])]
    return DatasetScan(m.dataset, Path(m.dataset_root), recs, [])


def companion_cache(cache_dir: Path | str, preset: Preset, *, out: Path | str | None = None,
                    workers: int = 1, progress: bool = False) -> Path:
    """The cache of the clips of ``cache_dir`` under ``preset`` (built or brought up to date)
    in ``out`` (default: ``companions/`` beside ``cache_dir``, so that a build ``--out`` folder
    still holds one cache); returns its directory."""
    cache_dir = resolve_cache_dir(cache_dir)
    m = read_manifest(cache_dir)
    if m is None:
        raise CacheError(f"{cache_dir}: no manifest; rerun python -m features.build")
    if m.preset == preset.to_dict():
        return cache_dir
    scan = cached_records(cache_dir)
    summary = build_cache(scan, preset, Path(out) if out is not None else cache_dir.parent / COMPANIONS, m.split_seed,
                          fractions=tuple(m.fractions), workers=workers, progress=progress)
    return summary.cache_dir
