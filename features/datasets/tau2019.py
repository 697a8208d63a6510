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

import re
from pathlib import Path

from features.datasets.base import (
    DatasetScan,
    Reject,
    add_listed,
    check_root,
    finish,
    metadata_rows,
)

NAME = "tau2019"
CLASSES = ("airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
           "street_pedestrian", "street_traffic", "tram")  # the acoustic scenes of the development set
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
    out = DatasetScan(NAME, base)
    seen: set[str] = set()
    for where, row in metadata_rows(base, NAME, METADATA, REQUIRED, EXPECTED, delimiter="\t"):
        name = (row.get("filename") or "").strip()
        label = (row.get("scene_label") or "").strip()
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
        add_listed(out, seen, name, label, group)
    return finish(out, EXPECTED)
