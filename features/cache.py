"""The feature cache: Parquet shards with an explicit Arrow schema, incremental, verified, atomic.

This module is the public facade; the cache is built from one module per concept:

* :mod:`features.store`     Arrow schemas, the one atomic writer, sha256, Arrow/Parquet readers;
* :mod:`features.manifest`  the typed, versioned ``Manifest`` (``manifest.json``) and file checks;
* :mod:`features.keys`      cache keys and directory names;
* :mod:`features.featurise` fingerprints, one record -> one row, parallel featurising;
* :mod:`features.builder`   ``build_cache``: list -> plan -> featurise -> write -> publish;
* :mod:`features.loader`    ``load_table``, ``read_cache_info``, ``find_cache_dirs``.

Layout of one cache directory (``OUT/{dataset}-{preset}-{preset_digest[:10]}``)::

    manifest.json               the current generation: names every data file below with its
                                sha256; swapped last, atomically, by each build
    shard-00000-<uid>.parquet   features of a batch of clips (schema: ``shard_schema``), zstd;
                                the durable, incremental unit
    table-<uid>.arrow           all live rows sorted by id, uncompressed Arrow IPC: the copy that
                                ``load_table`` memory-maps zero-copy
    splits-<uid>.parquet        id, split_random, split_group over all live ids
    rejects-<uid>.parquet, rejects-<uid>.csv   id, path, reason, action ("rejected" | "cropped")

Incremental builds: a record whose fingerprint (size, label, group, sha256 of the content; not
the mtime) is in the manifest (as a row, or as a reject whose content hash is also unchanged) is not decoded again;
new or changed records are decoded into a new shard; records that disappeared are dropped from
the live ids. Unchanged, verified inputs: nothing is written and the summary says "up to date".
Splits are pure functions of (split seed, sorted ids[, groups]) (:mod:`features.splits`),
recomputed over all live ids at every build, so an incremental build equals a clean build.

Atomicity: every build writes new uniquely named files; the manifest that names them replaces
the previous one with one ``os.replace``; the previous generation's files are deleted only after.
A kill at any instant leaves the previous complete cache loadable.

Storage dtype: the spectrogram is stored as float16. Values lie in [0, 1], where float16's
spacing is at most 2**-11 (~4.9e-4), far below the model's reconstruction error, while it halves
disk size and load bandwidth against float32 (see ``benchmarks/features_bench.py``).

Why two copies: Parquet decoding of a fixed_size_list column runs at ~0.5 GB/s on this machine,
while an uncompressed Arrow IPC file is memory-mapped zero-copy (page-cache pages are shared by
every process that loads the same cache, e.g. concurrent Ray trials). The Parquet shards (zstd)
stay the incremental, self-describing source of truth; the Arrow copy is derived from them.
"""
from features.builder import BuildSummary, build_cache
from features.keys import cache_dir_for, cache_key
from features.loader import CacheInfo, find_cache_dirs, load_table, read_cache_info
from features.manifest import MANIFEST_VERSION, Manifest
from features.store import BuildError, CacheError, fixed_list_tensor, shard_schema

__all__ = [
    "MANIFEST_VERSION",
    "BuildError",
    "BuildSummary",
    "CacheError",
    "CacheInfo",
    "Manifest",
    "build_cache",
    "cache_dir_for",
    "cache_key",
    "find_cache_dirs",
    "fixed_list_tensor",
    "load_table",
    "read_cache_info",
    "shard_schema",
]
