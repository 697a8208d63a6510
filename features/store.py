"""Storage primitives of the feature cache: Arrow schemas, one atomic writer, checksums, readers.

Every file of a cache is written by :func:`atomic_write` (temporary name in the same directory,
fsync, ``os.replace``, fsync of the directory), so that a file either exists complete or not at
all. Data files carry a generation id in their name (``shard-00003-<uid>.parquet``,
``table-<uid>.arrow``, ``splits-<uid>.parquet``, ...): a build never overwrites a file that the
current manifest names, which is what makes a whole build atomic (see :mod:`features.manifest`).
"""
from __future__ import annotations

import hashlib
import mmap
import os
import sys
import uuid
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from features.voice import VOICE_BANDS

SHARD_COMPRESSION = "zstd"
TMP_PREFIX = ".tmp-"
# Prefixes of the generation-named data files a build writes (and the cleanup may delete).
DATA_PREFIXES = ("shard-", "table-", "splits-", "rejects-")


class BuildError(RuntimeError):
    """A build that cannot produce a table (e.g. no usable file). One-line message."""


class CacheError(RuntimeError):
    """A cache directory that cannot be loaded (incomplete, corrupt, wrong version)."""


# ----------------------------------------------------------------------------------------
# Schemas
# ----------------------------------------------------------------------------------------
def shard_schema(shape: tuple[int, int], metadata: dict[str, str] | None = None) -> pa.Schema:
    """The explicit Arrow schema of a shard of spectrograms of ``shape`` (F, T), flattened row-major."""
    f, t = shape
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("label", pa.string(), nullable=False),
            pa.field("group", pa.string(), nullable=False),
            pa.field("spectrogram", pa.list_(pa.field("v", pa.float16(), nullable=False), f * t), nullable=False),
            pa.field("mask", pa.list_(pa.field("v", pa.float32(), nullable=False), t), nullable=False),
            pa.field("norm_stats", pa.list_(pa.field("v", pa.float32(), nullable=False), 4), nullable=False),
            pa.field("voice", pa.list_(pa.field("v", pa.float32(), nullable=False), VOICE_BANDS), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("cropped", pa.bool_(), nullable=False),
        ],
        metadata={k.encode(): v.encode() for k, v in (metadata or {}).items()},
    )


SPLITS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("split_random", pa.string(), nullable=False),
        pa.field("split_group", pa.string(), nullable=False),
    ]
)
REJECTS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
    ]
)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the features (recorded in the manifest and shards)."""
    import soundfile
    import torchaudio

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "pyarrow": pa.__version__,
        "numpy": np.__version__,
        "soundfile": soundfile.__version__,
    }


def generation_name(prefix: str, suffix: str) -> str:
    """A new, unique data-file name: ``{prefix}-{uid}{suffix}`` (e.g. ``splits-1a2b3c4d.parquet``)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}{suffix}"


# ----------------------------------------------------------------------------------------
# The one atomic writer
# ----------------------------------------------------------------------------------------
def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> str:
    """Write ``path`` through ``write(tmp)`` + fsync + ``os.replace``; returns the file's sha256.

    The checksum is taken from the temporary file after fsync, i.e. of the bytes that land on
    disk under ``path``.
    """
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return digest


def write_parquet(path: Path, table: pa.Table, compression: str = "none") -> str:
    """Atomically write a Parquet file (no dictionary encoding, no statistics); returns its sha256."""
    return atomic_write(
        path,
        lambda p: pq.write_table(table, p, compression=compression, use_dictionary=False, write_statistics=False),
    )


def write_ipc(path: Path, table: pa.Table) -> str:
    """Atomically write an uncompressed Arrow IPC file; returns its sha256."""

    def write(p: Path) -> None:
        with pa.OSFile(str(p), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)

    return atomic_write(path, write)


def write_text(path: Path, text: str) -> str:
    """Atomically write a UTF-8 text file; returns its sha256."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_files_except(cache_dir: Path, keep: set[str]) -> None:
    """Delete temporary files and generation-named data files of ``cache_dir`` not in ``keep``."""
    for p in cache_dir.iterdir():
        stale = p.name.startswith(DATA_PREFIXES) and p.name not in keep
        if p.name.startswith(TMP_PREFIX) or stale:
            try:
                p.unlink()
            except FileNotFoundError:
                pass


# ----------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------
def read_arrow_mmap(path: Path) -> pa.Table:
    """Zero-copy read of an Arrow IPC file through a private (copy-on-write) memory map.

    Pages are shared with the OS page cache (and so between processes loading the same cache,
    e.g. concurrent Ray trials); writing into the resulting tensors touches private copies of the
    pages, never the file.
    """
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    return pa.ipc.open_file(pa.BufferReader(pa.py_buffer(mm))).read_all()


def fixed_list_tensor(col: pa.ChunkedArray, shape: tuple[int, ...]) -> torch.Tensor:
    """A fixed_size_list column -> one torch tensor of ``shape``, via its flat values buffer (no row loop)."""
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    flat = arr.flatten().to_numpy(zero_copy_only=False)  # zero-copy for float16/float32 without nulls
    if flat.size != int(np.prod(shape)):
        raise CacheError(f"column {arr.type} has {flat.size} values, expected {shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Arrow buffers are read-only: do not write into the tensor
        return torch.from_numpy(flat).view(*shape)
