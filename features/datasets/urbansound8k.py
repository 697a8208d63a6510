"""UrbanSound8K adapter: ``metadata/UrbanSound8K.csv`` + ``audio/fold{n}/{slice_file_name}``.

CSV columns: slice_file_name, fsID, start, end, salience, fold, classID, class (only
slice_file_name, fold and class are required). label = ``class``, group = ``f"fold{fold}"``
(the official 10-fold cross-validation folds), id = path relative to the root without
suffix (``audio/fold1/100032-3-0-0``).

Rows are rejected, never opened, when the file is missing, when the name leads outside the
root (``../``, absolute path, symlink escaping the root), or when the row is malformed.
Audio files not listed in the CSV are ignored.
"""
from __future__ import annotations

import csv
from pathlib import Path

from features.datasets.base import (
    REASON_DUPLICATE,
    AudioRecord,
    DatasetError,
    DatasetScan,
    Reject,
    check_root,
    finish,
    record_id,
    resolve_listed,
)

NAME = "urbansound8k"
METADATA = "metadata/UrbanSound8K.csv"
EXPECTED = f"{METADATA} and audio/fold{{1..10}}/*.wav"
REQUIRED = ("slice_file_name", "fold", "class")

REASON_MALFORMED = "malformed metadata row (missing fields)"
REASON_BAD_FOLD = "fold in the metadata is not a positive integer"
REASON_EMPTY_CLASS = "empty class in the metadata"


def scan(root: Path | str, **_opts) -> DatasetScan:
    """List an UrbanSound8K root (the folder that holds ``metadata/`` and ``audio/``)."""
    base = check_root(root, NAME)
    meta = base / METADATA
    if not meta.is_file():
        raise DatasetError(f"{NAME}: {base} has no {METADATA} (expected {EXPECTED} under the root)")
    out = DatasetScan(NAME, base)
    seen: set[str] = set()
    try:
        with meta.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DatasetError(f"{NAME}: {meta} lacks column(s) {', '.join(missing)} (header: {','.join(header)})")
            reader.fieldnames = header
            for i, row in enumerate(reader, start=2):
                name = (row.get("slice_file_name") or "").strip()
                fold = (row.get("fold") or "").strip()
                label = (row.get("class") or "").strip()
                where = f"{METADATA}:{i}"
                if None in row.values() or not name or not fold:
                    out.rejects.append(Reject(name or where, where, REASON_MALFORMED))
                    continue
                if not fold.isdigit() or int(fold) < 1:
                    out.rejects.append(Reject(name, f"{where}: fold={fold!r}", REASON_BAD_FOLD))
                    continue
                if not label:
                    out.rejects.append(Reject(name, where, REASON_EMPTY_CLASS))
                    continue
                listed = f"audio/fold{int(fold)}/{name}"
                rel, path, reason = resolve_listed(base, listed)
                if reason is not None or path is None:
                    out.rejects.append(Reject(record_id(rel), listed, reason or ""))
                    continue
                rid = record_id(rel)
                if rid in seen:
                    out.rejects.append(Reject(rid, str(path), REASON_DUPLICATE))
                    continue
                seen.add(rid)
                out.records.append(AudioRecord(rid, path, label, f"fold{int(fold)}"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{NAME}: cannot read {meta}: {exc}") from exc
    return finish(out, EXPECTED)
