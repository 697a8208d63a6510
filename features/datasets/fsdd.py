"""Free Spoken Digit Dataset adapter: ``root/recordings/{digit}_{speaker}_{take}.wav`` (8 kHz).

label = digit (``"0"`` .. ``"9"``), group = speaker name (``"jackson"``), id = path relative
to the root without suffix (``recordings/7_jackson_32``). Only files directly in
``recordings/`` are listed; ``.wav`` files whose name does not parse are rejected.
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
)

NAME = "fsdd"
EXPECTED = "recordings/{digit}_{speaker}_{take}.wav"
_FILE = re.compile(r"^(\d)_([^_]+)_(\d+)$")

REASON_BAD_NAME = "file name does not match {digit}_{speaker}_{take}.wav"


def scan(root: Path | str, **_opts) -> DatasetScan:
    """List an FSDD root (the folder that holds ``recordings/``)."""
    base = check_root(root, NAME)
    rec_dir = base / "recordings"
    if not rec_dir.is_dir():
        raise DatasetError(f"{NAME}: {base} has no recordings/ folder (expected {EXPECTED} under the root)")
    out = DatasetScan(NAME, base)
    for path in sorted(rec_dir.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() != ".wav":
            continue
        rel = rel_posix(base, path)
        rid = record_id(rel)
        m = _FILE.match(path.stem)
        if m is None:
            out.rejects.append(Reject(rid, str(path), REASON_BAD_NAME))
            continue
        reason = check_member(base, path)
        if reason:
            out.rejects.append(Reject(rid, str(path), reason))
            continue
        digit, speaker, _take = m.groups()
        out.records.append(AudioRecord(rid, path, digit, speaker))
    return finish(out, EXPECTED)
