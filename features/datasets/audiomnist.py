"""AudioMNIST adapter: ``root/data/{speaker:02d}/{digit}_{speaker}_{take}.wav``.

label = digit (``"0"`` .. ``"9"``), group = speaker (two digits, ``"01"`` .. ``"60"``),
id = path relative to the root without suffix (``data/01/0_01_0``). Other files in ``data/``
(``audioMNIST_meta.txt``) are ignored; ``.wav`` files whose name does not parse, or whose
speaker differs from their folder, are rejected.
"""
from __future__ import annotations

import re
from pathlib import Path

from features.datasets.base import DatasetError, DatasetScan, add_files, check_root, finish, walk_files

NAME = "audiomnist"
CLASSES = tuple(str(d) for d in range(10))  # the spoken digits
EXPECTED = "data/{speaker:02d}/{digit}_{speaker}_{take}.wav"
_FILE = re.compile(r"^(\d)_(\d+)_(\d+)$")

REASON_BAD_NAME = "file name does not match {digit}_{speaker}_{take}.wav"
REASON_BAD_PLACE = "not in a data/{speaker:02d}/ folder"
REASON_SPEAKER_MISMATCH = "speaker in the file name differs from its data/{speaker}/ folder"


def parse(rel: str, path: Path) -> tuple[str, str] | str:
    """``data/01/0_01_0.wav`` -> (digit, two-digit speaker), or the reason it does not fit."""
    parts = rel.split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        return REASON_BAD_PLACE
    m = _FILE.match(path.stem)
    if m is None:
        return REASON_BAD_NAME
    digit, speaker, _take = m.groups()
    if int(speaker) != int(parts[1]):
        return REASON_SPEAKER_MISMATCH
    return digit, f"{int(speaker):02d}"


def scan(root: Path | str, **_opts) -> DatasetScan:
    """List an AudioMNIST root (the folder that holds ``data/``)."""
    base = check_root(root, NAME)
    data = base / "data"
    if not data.is_dir():
        raise DatasetError(f"{NAME}: {base} has no data/ folder (expected {EXPECTED} under the root)")
    out = DatasetScan(NAME, base)
    add_files(out, walk_files(base, data, (".wav",)), parse)
    return finish(out, EXPECTED)
