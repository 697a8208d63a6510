"""Decode and validate one audio file: mono float32 at the front end's rate, at most its time context.

:func:`load_audio` is the only place where audio files are opened. A file that cannot be
used raises :class:`AudioRejected` with a one-line, human-readable ``reason`` drawn from a
small set of constant strings (so that build summaries can count them), plus an optional
``detail`` with the specifics of this file.

Checks, in order (each is one reason below):

* the file is empty (0 bytes);
* a ``.wav`` file that starts like a RIFF/RF64 WAVE is walked chunk by chunk *before*
  decoding: a chunk (in particular the ``data`` chunk) declaring more bytes than the file
  holds means a truncated file. libsndfile would silently decode what is there, so this is
  checked here;
* libsndfile (``soundfile``) cannot decode it (a text file named ``.wav``, a corrupt header);
* it has no frame (0-length audio);
* it holds NaN or infinite samples (float WAVs);
* it is silent: peak absolute amplitude of the kept mono signal at or below
  :data:`SILENCE_PEAK` (1e-5, i.e. -100 dBFS, below one 16-bit step). Nothing here divides
  by the peak; the threshold only spares the front end's normalisation a degenerate clip.

Accepted: any channel count (mixed to mono by the mean of the channels), 8/16/24/32-bit
integer PCM and 32/64-bit float WAV, FLAC, OGG (whatever libsndfile reads), any sample rate
(resampled to ``sample_rate`` with :func:`torchaudio.functional.resample`).

Crop policy: a clip longer than ``duration_s`` keeps its **first** ``duration_s`` seconds
(only those frames are read) and comes back with ``cropped=True``; the cache records it as
a reject row with action ``"cropped"`` while keeping the clip. Shorter clips are returned
as they are, *not* padded: the front end zero-pads them and masks the padding.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

#: Peak absolute amplitude (full scale = 1.0) at or below which a clip counts as silent.
SILENCE_PEAK = 1e-5

# Reasons (constant strings; the specifics go in AudioRejected.detail).
REASON_EMPTY = "empty file (0 bytes)"
REASON_TRUNCATED = "truncated WAV: a chunk declares more bytes than the file holds"
REASON_UNDECODABLE = "not a decodable audio file"
REASON_ZERO_FRAMES = "no audio frames (0-length audio)"
REASON_NONFINITE = "NaN or infinite samples"
REASON_SILENT = "silent clip (peak at or below -100 dBFS)"
REASON_UNREADABLE = "unreadable file"

REASONS = (
    REASON_EMPTY,
    REASON_TRUNCATED,
    REASON_UNDECODABLE,
    REASON_ZERO_FRAMES,
    REASON_NONFINITE,
    REASON_SILENT,
    REASON_UNREADABLE,
)


class AudioRejected(Exception):
    """An audio file that cannot be used. ``reason``: one line, one of :data:`REASONS`;
    ``detail``: optional specifics (sizes, the decoder's message)."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


@dataclass(frozen=True)
class DecodedClip:
    """A decoded clip.

    waveform:           torch.float32 [S], mono, at ``sample_rate``, S <= round(sample_rate * duration_s)
    sample_rate:        the rate of ``waveform`` (the requested one)
    source_sample_rate: the file's rate
    source_frames:      the file's length in frames (before any crop)
    source_duration_s:  source_frames / source_sample_rate
    cropped:            True when the file was longer than ``duration_s`` and was cut to its start
    """

    waveform: torch.Tensor
    sample_rate: int
    source_sample_rate: int
    source_frames: int
    source_duration_s: float
    cropped: bool


_RIFF_LE = (b"RIFF", b"RF64", b"BW64")
_MAX_CHUNKS = 10_000


def check_wav_chunks(path: Path | str, size: int | None = None) -> str | None:
    """Walk the RIFF chunks of a WAV file; a description of the truncation, or None if intact.

    Files that do not start like a RIFF/RIFX/RF64/BW64 WAVE are not judged here (None): the
    decoder decides. A ``data`` chunk of size 0xFFFFFFFF in a plain RIFF (a streamed
    file of unknown length) is accepted; in RF64/BW64 its real size is taken from ``ds64``.
    """
    path = Path(path)
    size = os.path.getsize(path) if size is None else size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in _RIFF_LE + (b"RIFX",):
            return None
        endian = ">" if head[:4] == b"RIFX" else "<"
        is64 = head[:4] in (b"RF64", b"BW64")
        ds64_data: int | None = None
        offset = 12
        for _ in range(_MAX_CHUNKS):
            f.seek(offset)
            hdr = f.read(8)
            if len(hdr) == 0:
                return f"the file ends after {offset} bytes without a data chunk"
            if len(hdr) < 8:
                return f"chunk header at byte {offset} cut by the end of the file ({size} bytes)"
            cid = hdr[:4]
            (csize,) = struct.unpack(endian + "I", hdr[4:])
            if cid == b"ds64" and is64:
                body = f.read(16)
                if len(body) == 16:
                    ds64_data = struct.unpack("<Q", body[8:16])[0]
            if cid == b"data":
                if csize == 0xFFFFFFFF:
                    if not is64 or ds64_data is None:
                        return None  # streamed WAV of unknown length: decode what is there
                    csize = ds64_data
                end = offset + 8 + csize
                if end > size:
                    return f"data chunk declares {csize} bytes from byte {offset + 8}, the file holds {size} bytes"
                return None
            end = offset + 8 + csize
            if end > size:
                name = cid.decode("latin-1", "replace")
                return f"{name!r} chunk declares {csize} bytes from byte {offset + 8}, the file holds {size} bytes"
            offset = end + (csize & 1)
    return None


def load_audio(path: Path | str, sample_rate: int, duration_s: float) -> DecodedClip:
    """Decode ``path`` to mono float32 at ``sample_rate``, keeping at most its first ``duration_s`` s.

    Raises :class:`AudioRejected` for an empty, truncated, undecodable, 0-frame, non-finite
    or silent file (see the module docstring). Clips longer than ``duration_s`` keep their
    first ``duration_s`` seconds (``cropped=True``); shorter ones are not padded.
    """
    path = Path(path)
    sample_rate = int(sample_rate)
    if sample_rate <= 0 or not duration_s > 0:
        raise ValueError(f"sample_rate and duration_s must be > 0, got {sample_rate}, {duration_s}")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise AudioRejected(REASON_UNREADABLE, exc.strerror or str(exc)) from None
    if size == 0:
        raise AudioRejected(REASON_EMPTY)
    if path.suffix.lower() == ".wav":
        try:
            trunc = check_wav_chunks(path, size)
        except OSError as exc:
            raise AudioRejected(REASON_UNREADABLE, exc.strerror or str(exc)) from None
        if trunc:
            raise AudioRejected(REASON_TRUNCATED, trunc)

    try:
        with sf.SoundFile(str(path)) as f:
            src_rate = int(f.samplerate)
            frames = int(f.frames)
            # frames to keep: the first duration_s seconds (rounded up to whole frames)
            max_src = max(1, math.ceil(duration_s * src_rate - 1e-9))
            data = f.read(frames=min(frames, max_src) if frames > 0 else max_src, dtype="float32", always_2d=True)
    except AudioRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - libsndfile raises LibsndfileError/RuntimeError/TypeError
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioRejected(REASON_UNDECODABLE, msg[:200]) from None

    if src_rate <= 0:
        raise AudioRejected(REASON_UNDECODABLE, f"sample rate {src_rate}")
    if frames <= 0 or data.shape[0] == 0:
        raise AudioRejected(REASON_ZERO_FRAMES)
    cropped = frames > max_src
    mono = data.mean(axis=1, dtype=np.float64) if data.shape[1] > 1 else data[:, 0].astype(np.float64)
    if not np.isfinite(mono).all():
        n_bad = int((~np.isfinite(mono)).sum())
        raise AudioRejected(REASON_NONFINITE, f"{n_bad} of {mono.size} samples")
    peak = float(np.max(np.abs(mono)))
    if peak <= SILENCE_PEAK:
        raise AudioRejected(REASON_SILENT, f"peak {peak:.3g}")

    wave = torch.from_numpy(mono.astype(np.float32))
    if src_rate != sample_rate:
        g = math.gcd(src_rate, sample_rate)
        wave = torchaudio.functional.resample(wave, src_rate // g, sample_rate // g)
    n_max = int(round(sample_rate * duration_s))
    if wave.numel() > n_max:
        wave = wave[:n_max]
    return DecodedClip(
        waveform=wave.contiguous().to(torch.float32),
        sample_rate=sample_rate,
        source_sample_rate=src_rate,
        source_frames=frames,
        source_duration_s=frames / src_rate,
        cropped=bool(cropped),
    )
