"""Generic folder adapter: ``root/<class>/**/*.{wav,flac,ogg}``.

label = the class folder (first level under the root); group = the first sub-folder under
the class folder when there is one (``root/dog/session3/a.wav`` -> ``session3``), else the
file's own id, so that group-aware splits stay valid (every file its own group);
id = path relative to the root without suffix (``dog/session3/a``).

Suffixes are matched case-insensitively. Hidden files and folders (``.name``) are skipped,
symlinked folders are not followed, and symlinked files leading outside the root are
rejected unopened. Audio files directly in the root (no class folder) are rejected, and
so is the second of two files that differ only by their suffix (same id).
"""
from __future__ import annotations

from pathlib import Path

from features.datasets.base import DatasetScan, add_files, check_root, finish, record_id, walk_files

NAME = "folder"
CLASSES = None  # open: the class folders' names
SUFFIXES = (".wav", ".flac", ".ogg")
EXPECTED = "<class>/**/*.wav|flac|ogg"
REASON_NO_CLASS = "audio file directly in the root, not in a <class>/ folder"


def parse(rel: str, _path: Path) -> tuple[str, str] | str:
    """``dog/session3/a.wav`` -> (``dog``, ``session3``); ``dog/a.wav`` -> (``dog``, its own id)."""
    parts = rel.split("/")
    if len(parts) < 2:
        return REASON_NO_CLASS
    return parts[0], (parts[1] if len(parts) >= 3 else record_id(rel))


def list_folder(root: Path | str, name: str = NAME) -> DatasetScan:
    """The listing shared by the folder and synthetic adapters (``name`` goes in the scan)."""
    base = check_root(root, name)
    out = DatasetScan(name, base)
    add_files(out, walk_files(base, base, SUFFIXES), parse)
    return finish(out, EXPECTED)


def scan(root: Path | str, **_opts) -> DatasetScan:
    """List a folder-per-class root."""
    return list_folder(root, NAME)
