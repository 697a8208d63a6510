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

from pathlib import Path

from features.datasets.base import (
    DatasetScan,
    Reject,
    add_listed,
    check_root,
    finish,
    metadata_rows,
)

NAME = "urbansound8k"
CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling", "gun_shot",
           "jackhammer", "siren", "street_music")  # the ``class`` column of the official metadata
METADATA = "metadata/UrbanSound8K.csv"
EXPECTED = f"{METADATA} and audio/fold{{1..10}}/*.wav"
REQUIRED = ("slice_file_name", "fold", "class")

REASON_MALFORMED = "malformed metadata row (missing fields)"
REASON_BAD_FOLD = "fold in the metadata is not a positive integer"
REASON_EMPTY_CLASS = "empty class in the metadata"


def scan(root: Path | str, **_opts) -> DatasetScan:
    """List an UrbanSound8K root (the folder that holds ``metadata/`` and ``audio/``)."""
    base = check_root(root, NAME)
    out = DatasetScan(NAME, base)
    seen: set[str] = set()
    for where, row in metadata_rows(base, NAME, METADATA, REQUIRED, EXPECTED):
        name = (row.get("slice_file_name") or "").strip()
        fold = (row.get("fold") or "").strip()
        label = (row.get("class") or "").strip()
        if None in row.values() or not name or not fold:
            out.rejects.append(Reject(name or where, where, REASON_MALFORMED))
            continue
        if not fold.isdigit() or int(fold) < 1:
            out.rejects.append(Reject(name, f"{where}: fold={fold!r}", REASON_BAD_FOLD))
            continue
        if not label:
            out.rejects.append(Reject(name, where, REASON_EMPTY_CLASS))
            continue
        add_listed(out, seen, f"audio/fold{int(fold)}/{name}", label, f"fold{int(fold)}")
    return finish(out, EXPECTED)
