"""What every dataset adapter yields: records to featurise and rejects to report.

An adapter only *lists* a dataset: it reads metadata and file names, never audio. Decoding
and validation of the audio itself happens in :mod:`features.audio`.
"""
from __future__ import annotations

import csv
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


class DatasetError(RuntimeError):
    """A dataset cannot be listed at all (wrong root, missing metadata). One-line message."""


@dataclass(frozen=True)
class AudioRecord:
    """One clip of a dataset.

    id:    stable, unique within the dataset (e.g. the path relative to the root, no suffix).
    path:  absolute path of the audio file, guaranteed to lie inside the dataset root.
    label: class name; used only for evaluation, never for training.
    group: speaker, fold (``fold3``) or recording location, for group-aware splits.
    """

    id: str
    path: Path
    label: str
    group: str


@dataclass(frozen=True)
class Reject:
    """A file (or metadata row) that was not used as is, and why.

    action: ``"rejected"`` (not in the table) or ``"cropped"`` (in the table, shortened to the
    preset's time context).
    """

    id: str
    path: str
    reason: str
    action: str = "rejected"


@dataclass
class DatasetScan:
    """The listing of one dataset root: usable records and metadata-level rejects."""

    name: str
    root: Path
    records: list[AudioRecord] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


# ----------------------------------------------------------------------------------------
# Helpers shared by the adapters (listing only: nothing here ever opens an audio file)
# ----------------------------------------------------------------------------------------
#: Reasons of metadata-level rejects (constant strings, so that summaries can count them).
REASON_MISSING = "listed in the metadata but missing on disk"
REASON_ABSOLUTE = "absolute path in the metadata, outside the dataset root: not opened"
REASON_ESCAPES = "path escapes the dataset root through '..': not opened"
REASON_SYMLINK_OUTSIDE = "symlink resolving outside the dataset root: not opened"
REASON_NOT_FILE = "not a regular file"
REASON_EMPTY_NAME = "empty file name in the metadata"
REASON_DUPLICATE = "listed more than once (duplicate id)"


def check_root(root: Path | str, dataset: str) -> Path:
    """``root`` as an absolute, resolved directory, or :class:`DatasetError`."""
    p = Path(root).expanduser()
    if not p.exists():
        raise DatasetError(f"{dataset}: dataset root {p} does not exist")
    if not p.is_dir():
        raise DatasetError(f"{dataset}: dataset root {p} is not a directory")
    return p.resolve()


def record_id(rel: str) -> str:
    """The record id of a root-relative POSIX path: the path without its suffix."""
    stem, _ext = posixpath.splitext(rel)
    return stem


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def check_member(root: Path, path: Path) -> str | None:
    """Why ``path`` (lexically under the resolved ``root``) may not be used, or ``None``.

    Only ``lstat``/``realpath`` are used: the file is never opened.
    """
    if not os.path.lexists(path):
        return REASON_MISSING
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not _inside(target, root):
            return REASON_SYMLINK_OUTSIDE
        if not target.exists():
            return REASON_MISSING
        path = target
    else:
        # an intermediate symlinked directory could also lead outside
        real = Path(os.path.realpath(path))
        if not _inside(real, root):
            return REASON_SYMLINK_OUTSIDE
    if not path.is_file():
        return REASON_NOT_FILE
    return None


def resolve_listed(root: Path, name: str) -> tuple[str, Path | None, str | None]:
    """Resolve a file name read from metadata against the resolved ``root``.

    Returns ``(rel, path, reason)``: ``rel`` is the normalised root-relative POSIX path (or the
    raw name when it cannot be made one), ``path`` the absolute path when usable, and ``reason``
    the reject reason otherwise (absolute path, ``..`` escaping the root, symlink escaping
    the root, missing file, not a regular file). Never opens the file.
    """
    raw = (name or "").strip()
    if not raw:
        return raw, None, REASON_EMPTY_NAME
    posix = raw.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return raw, None, REASON_ABSOLUTE
    rel = posixpath.normpath(posix)
    if rel == ".." or rel.startswith("../") or rel == ".":
        return raw, None, REASON_ESCAPES
    path = root.joinpath(*rel.split("/"))
    reason = check_member(root, path)
    return rel, (None if reason else path), reason


def metadata_rows(base: Path, dataset: str, metadata: str, required: tuple[str, ...], expected: str,
                  delimiter: str = ",") -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of a dataset's metadata CSV as ``(where, row)``, ``where`` = ``"file:line"``.

    Raises :class:`DatasetError` (one line) when the file is missing, lacks a ``required``
    column, or cannot be read; header names are stripped of whitespace.
    """
    meta = base / metadata
    if not meta.is_file():
        raise DatasetError(f"{dataset}: {base} has no {metadata} (expected {expected} under the root)")
    try:
        with meta.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise DatasetError(
                    f"{dataset}: {meta} lacks column(s) {', '.join(missing)} "
                    f"(header: {header}; expected {expected})"
                )
            reader.fieldnames = header
            for i, row in enumerate(reader, start=2):
                yield f"{metadata}:{i}", row
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{dataset}: cannot read {meta}: {exc}") from exc


def add_listed(out: DatasetScan, seen: set[str], listed: str, label: str, group: str) -> None:
    """Resolve a file named in metadata and append it to ``out`` as a record, or as a reject
    (escaping the root, missing, not a file, or an id already ``seen``). Never opens the file."""
    rel, path, reason = resolve_listed(out.root, listed)
    if reason is not None or path is None:
        out.rejects.append(Reject(record_id(rel), listed, reason or ""))
        return
    rid = record_id(rel)
    if rid in seen:
        out.rejects.append(Reject(rid, str(path), REASON_DUPLICATE))
        return
    seen.add(rid)
    out.records.append(AudioRecord(rid, path, label, group))


def add_files(out: DatasetScan, paths: Iterable[Path], parse: Callable[[str, Path], tuple[str, str] | str]) -> None:
    """Append files found under ``out.root`` as records, or as rejects. Never opens a file.

    ``parse(rel, path)`` gets the root-relative POSIX path and returns ``(label, group)``, or a
    reject reason (a string) when the name or place does not fit the layout. A parsed file is
    then rejected when it leads outside the root or is not a regular file (:func:`check_member`),
    or when its id (path without suffix) was already listed.
    """
    seen: set[str] = set()
    for path in paths:
        rel = rel_posix(out.root, path)
        rid = record_id(rel)
        parsed = parse(rel, path)
        reason = parsed if isinstance(parsed, str) else check_member(out.root, path)
        if reason is None and rid in seen:
            reason = REASON_DUPLICATE
        if reason is not None:
            out.rejects.append(Reject(rid, str(path), reason))
            continue
        seen.add(rid)
        label, group = parsed
        out.records.append(AudioRecord(rid, path, label, group))


def walk_files(root: Path, top: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under ``top`` (inside the resolved ``root``) whose suffix is in ``suffixes``
    (lower-case, with the dot), sorted. Symlinked directories are not followed; hidden files
    and folders (name starting with ``.``) are skipped."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if f.startswith("."):
                continue
            if os.path.splitext(f)[1].lower() in suffixes:
                out.append(Path(dirpath) / f)
    out.sort()
    return out


def rel_posix(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as a '/'-separated string."""
    return path.relative_to(root).as_posix()


def finish(scan: DatasetScan, expected: str) -> DatasetScan:
    """Sort the scan and raise :class:`DatasetError` when it lists no usable record."""
    scan.records.sort(key=lambda r: r.id)
    scan.rejects.sort(key=lambda r: r.id)
    if not scan.records:
        if scan.rejects:
            r = scan.rejects[0]
            raise DatasetError(
                f"{scan.name}: no usable file under {scan.root} (expected {expected}); "
                f"{len(scan.rejects)} rejected, e.g. {r.path}: {r.reason}"
            )
        raise DatasetError(f"{scan.name}: no matching file under {scan.root} (expected {expected})")
    return scan
