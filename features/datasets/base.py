"""What every dataset adapter yields: records to featurise and rejects to report.

An adapter only *lists* a dataset: it reads metadata and file names, never audio. Decoding
and validation of the audio itself happens in :mod:`features.audio`.
"""
from __future__ import annotations

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
