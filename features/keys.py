"""Cache keys and cache directory names.

The directory is named from the dataset, the preset name and the preset's digest (the front-end
half of the key), so that the same front end over a growing dataset is updated in place. The full
cache key, ``sha256(preset digest | inputs hash | live ids)``, changes whenever the set of files
or the set of rows does.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from features.frontend import Preset


def inputs_hash(fingerprints: dict[str, str]) -> str:
    """16 hex digits over the sorted ``id -> fingerprint`` pairs of the inputs (content included)."""
    h = hashlib.sha256()
    for k in sorted(fingerprints):
        h.update(f"{k}\t{fingerprints[k]}\n".encode())
    return h.hexdigest()[:16]


def cache_key(preset: Preset, inputs_digest: str, live_ids: list[str]) -> str:
    """16 hex digits identifying the table: front end, inputs, and which of them decoded.

    The live ids matter when the inputs' stat fingerprints do not change but the table does: a
    rejected file fixed in place with its size and mtime kept becomes a row.
    """
    h = hashlib.sha256(f"{preset.digest()}|{inputs_digest}|".encode())
    for i in sorted(live_ids):
        h.update(f"{i}\n".encode())
    return h.hexdigest()[:16]


def cache_dir_for(out: Path | str, dataset: str, preset: Preset) -> Path:
    """The cache directory of ``dataset`` under front end ``preset`` inside ``out``."""
    return Path(out) / f"{dataset}-{preset.name}-{preset.digest()[:10]}"
