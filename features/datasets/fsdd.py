"""Free Spoken Digit Dataset adapter: ``root/recordings/{digit}_{speaker}_{take}.wav`` (8 kHz).

label = digit (``"0"`` .. ``"9"``), group = speaker name (``"jackson"``), id = path relative
to the root without suffix (``recordings/7_jackson_32``). Only files directly in
``recordings/`` are listed; ``.wav`` files whose name does not parse are rejected.
"""
from __future__ import annotations

import re
from pathlib import Path

from features.datasets.base import DatasetError, DatasetScan, add_files, check_root, finish

NAME = "fsdd"
CLASSES = tuple(str(d) for d in range(10))  # the spoken digits
EXPECTED = "recordings/{digit}_{speaker}_{take}.wav"
_FILE = re.compile(r"^(\d)_([^_]+)_(\d+)$")

REASON_BAD_NAME = "file name does not match {digit}_{speaker}_{take}.wav"


def parse(_rel: str, path: Path) -> tuple[str, str] | str:
    """``7_jackson_32.wav`` -> (digit, speaker), or the reason it does not fit."""
    m = _FILE.match(path.stem)
    if m is None:
        return REASON_BAD_NAME
    digit, speaker, _take = m.groups()
    return digit, speaker


def scan(root: Path | str, **_opts) -> DatasetScan:
    """List an FSDD root (the folder that holds ``recordings/``)."""
    base = check_root(root, NAME)
    rec_dir = base / "recordings"
    if not rec_dir.is_dir():
        raise DatasetError(f"{NAME}: {base} has no recordings/ folder (expected {EXPECTED} under the root)")
    out = DatasetScan(NAME, base)
    wavs = [p for p in sorted(rec_dir.iterdir()) if not p.name.startswith(".") and p.suffix.lower() == ".wav"]
    add_files(out, wavs, parse)
    return finish(out, EXPECTED)
