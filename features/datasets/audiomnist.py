"""AudioMNIST adapter: ``root/data/{speaker:02d}/{digit}_{speaker}_{take}.wav``.

label = digit (``"0"`` .. ``"9"``), group = speaker (two digits, ``"01"`` .. ``"60"``),
id = path relative to the root without suffix (``data/01/0_01_0``). Other files in ``data/``
(``audioMNIST_meta.txt``) are ignored; ``.wav`` files whose name does not parse, or whose
speaker differs from their folder, are rejected.
"""
from __future__ import annotations

import re
from pathlib import Path

from features.datasets.base import (
    AudioRecord,
    DatasetError,
    DatasetScan,
    Reject,
    check_member,
    check_root,
    finish,
    record_id,
    rel_posix,
    walk_files,
)

NAME = "audiomnist"
EXPECTED = "data/{speaker:02d}/{digit}_{speaker}_{take}.wav"
_FILE = re.compile(r"^(\d)_(\d+)_(\d+)$")

REASON_BAD_NAME = "file name does not match {digit}_{speaker}_{take}.wav"
REASON_BAD_PLACE = "not in a data/{speaker:02d}/ folder"
REASON_SPEAKER_MISMATCH = "speaker in the file name differs from its data/{speaker}/ folder"


def scan(root: Path | str, **_opts) -> DatasetScan:
    """List an AudioMNIST root (the folder that holds ``data/``)."""
    base = check_root(root, NAME)
    data = base / "data"
    if not data.is_dir():
        raise DatasetError(f"{NAME}: {base} has no data/ folder (expected {EXPECTED} under the root)")
    out = DatasetScan(NAME, base)
    for path in walk_files(base, data, (".wav",)):
        rel = rel_posix(base, path)
        rid = record_id(rel)
        parts = rel.split("/")
        m = _FILE.match(Path(parts[-1]).stem)
        if len(parts) != 3 or not parts[1].isdigit():
            out.rejects.append(Reject(rid, str(path), REASON_BAD_PLACE))
            continue
        if m is None:
            out.rejects.append(Reject(rid, str(path), REASON_BAD_NAME))
            continue
        digit, speaker, _take = m.groups()
        if int(speaker) != int(parts[1]):
            out.rejects.append(Reject(rid, str(path), REASON_SPEAKER_MISMATCH))
            continue
        reason = check_member(base, path)
        if reason:
            out.rejects.append(Reject(rid, str(path), reason))
            continue
        out.records.append(AudioRecord(rid, path, digit, f"{int(speaker):02d}"))
    return finish(out, EXPECTED)
