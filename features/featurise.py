"""Featurising records: fingerprints of input files, one record -> one row, many -> rows in parallel.

A record's *fingerprint* (size, label, group and the sha256 of its bytes) decides whether a usable
row is still valid and enters the cache key: content edited under the same size and mtime is
featurised again, and a copy with new mtimes but the same bytes (a fresh ``cp``, a re-download, a
checkout) is not (a sha256 pass over the inputs, ~20 ms per 30 MB). A rejected
record also keeps a *content fingerprint* (:func:`content_fingerprint`, the sha256 of its bytes,
or ``unreadable: <errno>``), so that a file made readable by a ``chmod`` is retried.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import torch

from features.audio import AudioRejected, load_audio
from features.datasets.base import AudioRecord, Reject
from features.frontend import Preset, compute_features
from features.store import sha256_file


def stat_fingerprint(rec: AudioRecord) -> str:
    """``size:label:group:sha256`` of a record's file (raises OSError when it cannot be read). The
    sha256 of the content decides "unchanged": an edit that keeps the size and the mtime (``cp -p``,
    ``rsync -t``, an unpacked archive) is a change, and so is the cache key; new mtimes on the same
    bytes (a copy made without ``-p``) are not. The mtime is not part of it."""
    st = os.stat(rec.path)
    return f"{st.st_size}:{rec.label}:{rec.group}:{sha256_file(rec.path)}"


def content_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or ``unreadable: <reason>`` (so that becoming readable is a change)."""
    try:
        return sha256_file(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def featurise_record(rec: AudioRecord, preset: Preset, loader: Callable | None = None) -> dict[str, Any]:
    """Decode + featurise one record. Returns a row dict, or {"reject": Reject} for a bad file.

    Any exception while decoding is turned into a reject (with its message) rather than
    stopping the build; the reason of ``AudioRejected`` is kept as is. A clip longer than the
    preset's duration is cropped: its row also carries a "cropped" reject.
    """
    load = loader or load_audio
    try:
        clip = load(rec.path, preset.sample_rate, preset.duration_s)
        feats = compute_features(clip.waveform, preset)
    except AudioRejected as exc:
        return {"reject": Reject(rec.id, str(rec.path), exc.reason, "rejected")}
    except Exception as exc:  # noqa: BLE001 - every bad input becomes a reject, never a crash
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return {"reject": Reject(rec.id, str(rec.path), reason, "rejected")}
    cropped = bool(getattr(clip, "cropped", False))
    row = {
        "id": rec.id,
        "label": rec.label,
        "group": rec.group,
        "spectrogram": feats.spectrogram.numpy().astype(np.float16).reshape(-1),
        "mask": feats.mask.numpy().astype(np.float32),
        "norm_stats": feats.norm_stats.numpy().astype(np.float32),
        "voice": feats.voice.numpy().astype(np.float32),
        "path": str(rec.path),
        "cropped": cropped,
    }
    if cropped:
        row["reject"] = Reject(rec.id, str(rec.path), f"longer than {preset.duration_s:g} s: cropped", "cropped")
    return row


def _worker_init() -> None:
    torch.set_num_threads(1)


def _featurise_star(args: tuple) -> dict[str, Any]:
    return featurise_record(*args)


def featurise_all(
    todo: list[AudioRecord], preset: Preset, workers: int, progress: bool, loader: Callable | None
) -> Iterable[dict[str, Any]]:
    """Rows (or rejects) of ``todo`` in order, in this process or ``workers`` spawned processes."""
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="featurising", unit="file", disable=not progress or not todo, file=sys.stderr)
    # One intra-op thread everywhere (here and in the workers): float reductions then give the
    # same bits whatever --workers is, so a table does not depend on how it was built.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if workers <= 1 or len(todo) < 2 * workers:
            for rec in todo:
                yield featurise_record(rec, preset, loader)
                bar.update(1)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # torch + fork is unsafe
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
                chunk = max(1, min(64, len(todo) // (workers * 8)))
                for row in pool.map(_featurise_star, [(r, preset, loader) for r in todo], chunksize=chunk):
                    yield row
                    bar.update(1)
    finally:
        torch.set_num_threads(threads)
        bar.close()


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Row dicts -> an Arrow table of ``schema`` (fixed-size lists built from one flat buffer)."""
    n = len(rows)
    arrays = []
    for fld in schema:
        name = fld.name
        if pa.types.is_fixed_size_list(fld.type):
            flat = np.concatenate([r[name] for r in rows]) if n else np.zeros(0, fld.type.value_type.to_pandas_dtype())
            values = pa.array(flat, type=fld.type.value_type)
            arrays.append(pa.FixedSizeListArray.from_arrays(values, fld.type.list_size))
        else:
            arrays.append(pa.array([r[name] for r in rows], type=fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)
