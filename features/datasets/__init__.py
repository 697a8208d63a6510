"""Dataset adapters: list a dataset root into records (id, path, label, group) and rejects.

``DATASETS`` maps a dataset name to its ``scan(root, **opts) -> DatasetScan``;
``scan_dataset(name, root, **opts)`` dispatches. ``CLASSES`` holds each adapter's label
vocabulary (None: open, e.g. the folder names of the folder layout). ``DEFAULT_PRESET`` names
each dataset's front end (presets live in :mod:`features.frontend`). Adapters read metadata and file
names only; audio is decoded and validated by :mod:`features.audio`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from features.datasets import audiomnist, folder, fsdd, synthetic, tau2019, urbansound8k
from features.datasets.base import AudioRecord, DatasetError, DatasetScan, Reject

DATASETS: dict[str, Callable[..., DatasetScan]] = {
    "audiomnist": audiomnist.scan,
    "fsdd": fsdd.scan,
    "urbansound8k": urbansound8k.scan,
    "tau2019": tau2019.scan,
    "folder": folder.scan,
    "synthetic": synthetic.scan,
}

CLASSES: dict[str, tuple[str, ...] | None] = {
    "audiomnist": audiomnist.CLASSES,
    "fsdd": fsdd.CLASSES,
    "urbansound8k": urbansound8k.CLASSES,
    "tau2019": tau2019.CLASSES,
    "folder": folder.CLASSES,
    "synthetic": synthetic.CLASS_NAMES,
}

# Spoken-word datasets: their default front end is the one the recommended recipe is measured
# with (trainables.config.RECIPE_FRONTENDS), per model in studies and benchmarks.
SPEECH_DATASETS = ("audiomnist", "fsdd")

# What each adapter's ``AudioRecord.group`` is: only "speaker" groups allow per-speaker
# normalisation (features.normalise.check_dataset).
GROUP_KIND: dict[str, str] = {
    "audiomnist": "speaker",
    "fsdd": "speaker",
    "urbansound8k": "fold",
    "tau2019": "location",
    "folder": "sub-folder",
    "synthetic": "speaker",
}

DEFAULT_PRESET: dict[str, str] = {
    "audiomnist": "awe_voice",  # 4 voices: FSDD's speaker count; AudioMNIST's 60 speakers not measured
    "fsdd": "awe_voice",
    "urbansound8k": "urban4s",
    "tau2019": "urban10s",
    "folder": "audiomnist",
    "synthetic": "compact",
}


def scan_dataset(name: str, root: Path | str, **opts) -> DatasetScan:
    """List dataset ``name`` at ``root`` (raises :class:`DatasetError` on a wrong root or name)."""
    try:
        fn = DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}") from None
    return fn(root, **opts)


__all__ = ["CLASSES", "DATASETS", "DEFAULT_PRESET", "GROUP_KIND", "SPEECH_DATASETS", "AudioRecord", "DatasetError",
           "DatasetScan", "Reject", "scan_dataset"]
