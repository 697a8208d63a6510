"""Test fixtures on disk: WAV files (good and broken) and each dataset's real layout.

Every writer takes the destination path (parent folders are created) and returns it; every
``make_*_tree`` takes a root folder, builds the dataset's layout in it and returns the root.
The names are stable: other test modules (the cache builder's end-to-end tests) use them.

Good audio
    write_tone(path, sample_rate=16000, duration_s=0.5, freq=440.0, channels=1, subtype="PCM_16")
    write_too_long_wav(path, sample_rate=16000, duration_s=3.0)
Broken audio (each gives its own :data:`features.audio.REASONS` entry)
    write_empty_file(path)           -> REASON_EMPTY
    write_truncated_wav(path)        -> REASON_TRUNCATED   (data chunk declares more than is there)
    write_text_as_wav(path)          -> REASON_UNDECODABLE (a text file named .wav)
    write_zero_frame_wav(path)       -> REASON_ZERO_FRAMES (valid header, no frame)
    write_nan_wav(path)              -> REASON_NONFINITE   (float WAV holding NaN / inf)
    write_silent_wav(path)           -> REASON_SILENT      (all zeros)
    BROKEN: {name: writer}; broken_writers() -> {name: (writer, reason)}; write_broken_set(folder)
Dataset layouts (tones whose pitch depends on the label, so that classes differ)
    make_audiomnist_tree(root, speakers=(1, 2), digits=(0, 1, 2), takes=2, sample_rate=48000)
    make_fsdd_tree(root, speakers=("george", "jackson"), digits=(0, 1, 2), takes=2, sample_rate=8000)
    make_us8k_tree(root, classes=("dog_bark", "siren", "drilling"), folds=(1, 2), per_fold=2)
        + one metadata row pointing to a missing file and one to ``../../../outside.wav``
          (an existing file in root's parent: it must be rejected, never opened)
    make_tau_tree(root, scenes=("airport", "park"), locations=("barcelona-0", "lyon-1"), segments=2)
    make_folder_tree(root, classes=("cat", "dog"), groups=("s1", "s2"), per_group=2, ungrouped=1)
Each tree function documents how many records and rejects its adapter must list.
"""
from __future__ import annotations

import csv
import math
import struct
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

# --------------------------------------------------------------------------------------
# Audio writers
# --------------------------------------------------------------------------------------


def tone(
    n: int, sample_rate: int, freq: float = 440.0, amplitude: float = 0.5, channels: int = 1
) -> np.ndarray:
    """A sine (with a second harmonic) [n, channels] float64; channels get slightly different phases."""
    t = np.arange(n, dtype=np.float64) / sample_rate
    cols = []
    for c in range(channels):
        ph = 0.3 * c
        x = np.sin(2 * math.pi * freq * t + ph) + 0.3 * np.sin(2 * math.pi * 2 * freq * t + ph)
        cols.append(amplitude * x / 1.3)
    return np.stack(cols, axis=1)


def _prep(path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_tone(
    path: Path | str,
    sample_rate: int = 16000,
    duration_s: float = 0.5,
    freq: float = 440.0,
    channels: int = 1,
    subtype: str = "PCM_16",
    amplitude: float = 0.5,
    fmt: str | None = None,
) -> Path:
    """A tone file. ``subtype``: PCM_U8 / PCM_16 / PCM_24 / PCM_32 / FLOAT / DOUBLE (WAV) or
    whatever libsndfile accepts for ``fmt`` (default: from the suffix, e.g. FLAC, OGG)."""
    path = _prep(path)
    n = int(round(sample_rate * duration_s))
    data = tone(n, sample_rate, freq, amplitude, channels)
    sf.write(str(path), data, sample_rate, subtype=subtype, format=fmt)
    return path


def write_too_long_wav(path: Path | str, sample_rate: int = 16000, duration_s: float = 3.0,
                       freq: float = 440.0) -> Path:
    """A valid tone longer than the usual 1 s context (load_audio crops it: ``cropped=True``)."""
    return write_tone(path, sample_rate=sample_rate, duration_s=duration_s, freq=freq)


def write_empty_file(path: Path | str) -> Path:
    """A 0-byte ``.wav``."""
    path = _prep(path)
    path.write_bytes(b"")
    return path


def write_truncated_wav(path: Path | str, sample_rate: int = 16000, duration_s: float = 0.5, keep: float = 0.5) -> Path:
    """A valid 16-bit WAV cut to ``keep`` of its size: the data chunk declares more than is there."""
    path = _prep(path)
    write_tone(path, sample_rate=sample_rate, duration_s=duration_s)
    raw = path.read_bytes()
    path.write_bytes(raw[: max(60, int(len(raw) * keep))])
    return path


def write_text_as_wav(path: Path | str) -> Path:
    """A text file named ``.wav``."""
    path = _prep(path)
    path.write_text("this is not audio, just a text file with a .wav name\n" * 20, encoding="utf-8")
    return path


def write_zero_frame_wav(path: Path | str, sample_rate: int = 16000) -> Path:
    """A well-formed 16-bit WAV whose data chunk is empty (0 frames)."""
    path = _prep(path)
    sf.write(str(path), np.zeros((0, 1), dtype=np.float32), sample_rate, subtype="PCM_16")
    return path


def write_nan_wav(path: Path | str, sample_rate: int = 16000, duration_s: float = 0.5,
                  value: float = float("nan")) -> Path:
    """A 32-bit float WAV holding NaN (or ``value``, e.g. ``inf``) in some samples.

    Written by hand (RIFF/fmt/data) so that no library sanitises the samples."""
    path = _prep(path)
    n = int(round(sample_rate * duration_s))
    x = tone(n, sample_rate)[:, 0].astype("<f4")
    x[n // 3 : n // 3 + 10] = value
    payload = x.tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, sample_rate, sample_rate * 4, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def write_silent_wav(path: Path | str, sample_rate: int = 16000, duration_s: float = 0.5) -> Path:
    """A 16-bit WAV of digital silence."""
    path = _prep(path)
    n = int(round(sample_rate * duration_s))
    sf.write(str(path), np.zeros((n, 1), dtype=np.float32), sample_rate, subtype="PCM_16")
    return path


def _reasons() -> dict[str, str]:
    from features import audio

    return {
        "empty": audio.REASON_EMPTY,
        "truncated": audio.REASON_TRUNCATED,
        "text": audio.REASON_UNDECODABLE,
        "zero_frames": audio.REASON_ZERO_FRAMES,
        "nan": audio.REASON_NONFINITE,
        "silent": audio.REASON_SILENT,
    }


#: name -> writer; :func:`broken_writers` adds each one's expected reason.
BROKEN: dict[str, Callable[..., Path]] = {
    "empty": write_empty_file,
    "truncated": write_truncated_wav,
    "text": write_text_as_wav,
    "zero_frames": write_zero_frame_wav,
    "nan": write_nan_wav,
    "silent": write_silent_wav,
}


def broken_writers() -> dict[str, tuple[Callable[..., Path], str]]:
    """{name: (writer, expected AudioRejected.reason)} for every kind of broken file."""
    reasons = _reasons()
    return {k: (w, reasons[k]) for k, w in BROKEN.items()}


def write_broken_set(folder: Path | str) -> dict[str, Path]:
    """One file of each broken kind in ``folder`` (``<kind>.wav``); returns {kind: path}."""
    folder = Path(folder)
    return {k: w(folder / f"{k}.wav") for k, w in BROKEN.items()}


# --------------------------------------------------------------------------------------
# Dataset layouts
# --------------------------------------------------------------------------------------


def _freq(label_index: int, variant: int = 0) -> float:
    return 220.0 * (1.25 ** label_index) * (1.0 + 0.02 * variant)


def make_audiomnist_tree(
    root: Path | str,
    speakers: Sequence[int] = (1, 2),
    digits: Sequence[int] = (0, 1, 2),
    takes: int = 2,
    sample_rate: int = 48000,
    duration_s: float = 0.4,
    bad_name: bool = True,
) -> Path:
    """``root/data/{speaker:02d}/{digit}_{speaker:02d}_{take}.wav`` + ``data/audioMNIST_meta.txt``.

    Records: len(speakers) * len(digits) * takes. With ``bad_name`` one more file
    ``data/{first speaker}/notes_take.wav`` is written: 1 reject (name does not parse)."""
    root = Path(root)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "audioMNIST_meta.txt").write_text("{}\n", encoding="utf-8")
    for s in speakers:
        for d in digits:
            for k in range(takes):
                write_tone(data / f"{s:02d}" / f"{d}_{s:02d}_{k}.wav", sample_rate, duration_s, _freq(d, s))
    if bad_name:
        write_tone(data / f"{speakers[0]:02d}" / "notes_take.wav", sample_rate, duration_s)
    return root


def make_fsdd_tree(
    root: Path | str,
    speakers: Sequence[str] = ("george", "jackson"),
    digits: Sequence[int] = (0, 1, 2),
    takes: int = 2,
    sample_rate: int = 8000,
    duration_s: float = 0.4,
    bad_name: bool = True,
) -> Path:
    """``root/recordings/{digit}_{speaker}_{take}.wav`` (8 kHz) + a README.

    Records: len(speakers) * len(digits) * takes. With ``bad_name`` one more file
    ``recordings/unknown.wav``: 1 reject (name does not parse)."""
    root = Path(root)
    rec = root / "recordings"
    rec.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text("FSDD test fixture\n", encoding="utf-8")
    for si, s in enumerate(speakers):
        for d in digits:
            for k in range(takes):
                write_tone(rec / f"{d}_{s}_{k}.wav", sample_rate, duration_s, _freq(d, si))
    if bad_name:
        write_tone(rec / "unknown.wav", sample_rate, duration_s)
    return root


def make_us8k_tree(
    root: Path | str,
    classes: Sequence[str] = ("dog_bark", "siren", "drilling"),
    folds: Sequence[int] = (1, 2),
    per_fold: int = 2,
    sample_rate: int = 22050,
    duration_s: float = 0.5,
    bad_rows: bool = True,
) -> Path:
    """``root/metadata/UrbanSound8K.csv`` + ``root/audio/fold{n}/{fsID}-{classID}-0-{k}.wav``.

    Records: len(classes) * len(folds) * per_fold. With ``bad_rows`` two more CSV rows:
    one for a file that does not exist (reject: missing) and one whose slice_file_name is
    ``../../../outside.wav``, which resolves to an existing file written in root's *parent*
    (reject: escapes the root; it must never be opened). 2 rejects."""
    root = Path(root)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    rows = []
    fs_id = 100000
    for f in folds:
        for ci, c in enumerate(classes):
            for k in range(per_fold):
                fs_id += 1
                name = f"{fs_id}-{ci}-0-{k}.wav"
                write_tone(root / "audio" / f"fold{f}" / name, sample_rate, duration_s, _freq(ci, f))
                rows.append([name, fs_id, 0.0, duration_s, 1, f, ci, c])
    if bad_rows:
        rows.append(["999999-0-0-0.wav", 999999, 0.0, 1.0, 1, folds[0], 0, classes[0]])
        write_tone(root.parent / "outside.wav", sample_rate, duration_s)
        rows.append(["../../../outside.wav", 999998, 0.0, 1.0, 1, folds[0], 0, classes[0]])
    with (root / "metadata" / "UrbanSound8K.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        w.writerows(rows)
    return root


def make_tau_tree(
    root: Path | str,
    scenes: Sequence[str] = ("airport", "park"),
    locations: Sequence[str] = ("barcelona-0", "lyon-1"),
    segments: int = 2,
    sample_rate: int = 48000,
    duration_s: float = 0.5,
    bad_rows: bool = True,
) -> Path:
    """``root/meta.csv`` (TAB-separated: filename, scene_label, identifier, source_label) +
    ``root/audio/{scene}-{city}-{loc}-{segment}-a.wav``.

    Records: len(scenes) * len(locations) * segments. With ``bad_rows`` two more rows: a
    missing file and an absolute path (``/etc/passwd.wav``): 2 rejects."""
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for si, s in enumerate(scenes):
        for li, loc in enumerate(locations):
            for k in range(segments):
                name = f"audio/{s}-{loc}-{k}-a.wav"
                write_tone(root / name, sample_rate, duration_s, _freq(si, li))
                rows.append([name, s, loc, "a"])
    if bad_rows:
        rows.append([f"audio/{scenes[0]}-{locations[0]}-99-a.wav", scenes[0], locations[0], "a"])
        rows.append(["/etc/passwd.wav", scenes[0], locations[0], "a"])
    with (root / "meta.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["filename", "scene_label", "identifier", "source_label"])
        w.writerows(rows)
    return root


def make_folder_tree(
    root: Path | str,
    classes: Sequence[str] = ("cat", "dog"),
    groups: Sequence[str] = ("s1", "s2"),
    per_group: int = 2,
    ungrouped: int = 1,
    sample_rate: int = 16000,
    duration_s: float = 0.5,
) -> Path:
    """``root/<class>/<group>/<class>_<group>_<k>.wav`` plus ``ungrouped`` files directly in
    each class folder (``root/<class>/<class>_solo_<k>.flac``, their own group), a non-audio
    ``notes.txt`` and a hidden ``.DS_Store`` (both ignored).

    Records: len(classes) * (len(groups) * per_group + ungrouped); 0 rejects."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("not audio\n", encoding="utf-8")
    for ci, c in enumerate(classes):
        (root / c).mkdir(exist_ok=True)
        (root / c / ".DS_Store").write_bytes(b"\0\1junk")
        for gi, g in enumerate(groups):
            for k in range(per_group):
                write_tone(root / c / g / f"{c}_{g}_{k}.wav", sample_rate, duration_s, _freq(ci, gi))
        for k in range(ungrouped):
            write_tone(root / c / f"{c}_solo_{k}.flac", sample_rate, duration_s, _freq(ci, 7), subtype="PCM_16")
    return root
