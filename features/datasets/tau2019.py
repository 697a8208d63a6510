"""TAU Urban Acoustic Scenes 2019 (development) adapter: ``meta.csv`` + ``audio/``.

``meta.csv`` is TAB-separated with a header ``filename, scene_label, identifier,
source_label``; ``filename`` is relative to the root (``audio/airport-barcelona-0-0-a.wav``).
label = ``scene_label``, group = ``identifier`` (the recording location, ``barcelona-0``; when
the column is absent or empty it is derived from the file name ``scene-city-loc-seg-dev``),
id = path relative to the root without suffix (``audio/airport-barcelona-0-0-a``).

Rows are rejected, never opened, when the file is missing, when the name leads outside the
root (``../``, absolute path, symlink escaping the root), or when the row is malformed.
"""
from __future__ import annotations

import csv
import re
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

NAME = "tau2019"
METADATA = "meta.csv"
EXPECTED = f"{METADATA} (tab-separated: filename, scene_label, identifier, source_label) and audio/*.wav"
REQUIRED = ("filename", "scene_label")

REASON_MALFORMED = "malformed metadata row (missing fields)"
REASON_EMPTY_LABEL = "empty scene_label in the metadata"
REASON_NO_GROUP = "no identifier in the metadata and none in the file name"

# scene-city-location-segment-device, e.g. airport-barcelona-0-0-a / street_pedestrian-lyon-1-2-a
_NAME = re.compile(r"^(?P<scene>[^-]+)-(?P<city>[^-]+)-(?P<loc>\d+)-(?P<seg>\d+)-(?P<dev>[^-]+)$")


def identifier_from_name(filename: str) -> str | None:
    """``airport-barcelona-0-0-a.wav`` -> ``barcelona-0`` (the TAU identifier), else None."""
    m = _NAME.match(Path(filename.replace("\\", "/")).stem)
    return f"{m['city']}-{m['loc']}" if m else None


def scan(root: Path | str, **_opts) -> DatasetScan:
    """List a TAU2019 development root (the folder that holds ``meta.csv`` and ``audio/``)."""
    base = check_root(root, NAME)
    meta = base / METADATA
    if not meta.is_file():
        raise DatasetError(f"{NAME}: {base} has no {METADATA} (expected {EXPECTED} under the root)")
    out = DatasetScan(NAME, base)
    seen: set[str] = set()
    try:
        with meta.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DatasetError(
                    f"{NAME}: {meta} lacks column(s) {', '.join(missing)} "
                    f"(header: {header}; expected {EXPECTED})"
                )
            reader.fieldnames = header
            for i, row in enumerate(reader, start=2):
                name = (row.get("filename") or "").strip()
                label = (row.get("scene_label") or "").strip()
                where = f"{METADATA}:{i}"
                if not name or None in row.values():
                    out.rejects.append(Reject(name or where, where, REASON_MALFORMED))
                    continue
                if not label:
                    out.rejects.append(Reject(name, where, REASON_EMPTY_LABEL))
                    continue
                group = (row.get("identifier") or "").strip() or identifier_from_name(name)
                if not group:
                    out.rejects.append(Reject(name, where, REASON_NO_GROUP))
                    continue
                rel, path, reason = resolve_listed(base, name)
                if reason is not None or path is None:
                    out.rejects.append(Reject(record_id(rel), name, reason or ""))
                    continue
                rid = record_id(rel)
                if rid in seen:
                    out.rejects.append(Reject(rid, str(path), REASON_DUPLICATE))
                    continue
                seen.add(rid)
                out.records.append(AudioRecord(rid, path, label, group))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{NAME}: cannot read {meta}: {exc}") from exc
    return finish(out, EXPECTED)
