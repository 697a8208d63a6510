"""The cache manifest: a typed, versioned, validated description of one cache generation.

``manifest.json`` is the only file of a cache directory with a fixed name. It names every data
file of the current generation with its sha256, so that

* a build writes new, uniquely named files and swaps the manifest last with one
  ``os.replace`` (:func:`write_manifest`): a build killed at any instant leaves the previous
  manifest, which names only files that are still there and unchanged;
* readers resolve files only through the manifest they read, and can check every byte
  (:func:`verify_files`).

Version history: 1 (fixed-name ``splits.parquet`` / ``rejects.*``, no per-file checksums, no
``dataset``/``classes`` fields) is not read any more: :func:`read_manifest` raises
:class:`ManifestVersionError`, ``load_table`` turns it into "rerun python -m features.build",
and the build rebuilds from scratch saying why.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from features.store import CacheError, sha256_file, write_text

MANIFEST = "manifest.json"
MANIFEST_VERSION = 3  # 3: the voice column (features.voice)


class ManifestVersionError(CacheError):
    """A manifest written by another format version of the cache (``found``: its version)."""

    def __init__(self, where: str, found: object) -> None:
        super().__init__(f"{where}: manifest version {found} is not the supported version {MANIFEST_VERSION}; "
                         f"rerun python -m features.build to rebuild the cache")
        self.found = found


@dataclass(frozen=True)
class DataFile:
    """One data file of a generation and the sha256 of its bytes."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Shard(DataFile):
    """A Parquet shard; ``ids`` are its live rows (rows of removed or changed files are dropped)."""

    ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DecodeReject:
    """A record that failed to decode, with the content fingerprint it failed with.

    ``content`` is the sha256 of the file's bytes when it was rejected (or ``unreadable: ...``):
    the record is retried as soon as its content, or its readability, differs.
    """

    path: str
    reason: str
    content: str


_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": int, "generation": str, "dataset": str, "dataset_root": str, "preset": dict,
    "preset_digest": str, "inputs_hash": str, "cache_key": str, "split_seed": int, "fractions": list,
    "split_warnings": list, "n_rows": int, "n_classes": int, "classes": list, "shape": list,
    "spectrogram_dtype": str, "shards": list, "arrow": dict, "splits": dict, "rejects": dict,
    "rejects_csv": dict, "fingerprints": dict, "decode_rejects": dict, "scan_rejects": list,
    "versions": dict, "created": str,
}


@dataclass(frozen=True)
class Manifest:
    """Everything ``manifest.json`` holds (see ``docs/ARCHITECTURE.md``, features)."""

    generation: str  # uid of the build that wrote it
    dataset: str
    dataset_root: str
    preset: dict[str, Any]  # Preset.to_dict()
    preset_digest: str
    inputs_hash: str  # hash of the inputs' stat fingerprints (features.keys)
    cache_key: str  # hash of preset digest + inputs_hash + live ids (features.keys)
    split_seed: int
    fractions: list[float]
    split_warnings: list[str]
    n_rows: int
    classes: list[str]  # sorted labels of the live rows
    shape: list[int]  # (F, T)
    spectrogram_dtype: str
    shards: list[Shard]
    arrow: DataFile  # consolidated Arrow IPC copy
    splits: DataFile
    rejects: DataFile
    rejects_csv: DataFile
    fingerprints: dict[str, str]  # id -> stat fingerprint of every usable or decode-rejected record
    decode_rejects: dict[str, DecodeReject]
    scan_rejects: list[dict[str, str]]  # Reject fields of the adapter's rejects
    versions: dict[str, str]
    created: str
    version: int = MANIFEST_VERSION

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def data_files(self) -> list[DataFile]:
        """Every data file of this generation (shards first)."""
        return [*self.shards, self.arrow, self.splits, self.rejects, self.rejects_csv]

    def to_json(self) -> str:
        d = asdict(self)
        d["n_classes"] = self.n_classes
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST) -> "Manifest":
        """Parse and validate; raises :class:`ManifestVersionError` or :class:`CacheError` (one line)."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CacheError(f"{where}: unreadable manifest ({exc}); rerun python -m features.build") from None
        if not isinstance(d, dict):
            raise CacheError(f"{where}: manifest is not a JSON object; rerun python -m features.build")
        version = d.get("version", d.get("format_version", "unknown"))
        if version != MANIFEST_VERSION:
            raise ManifestVersionError(where, version)
        for key, typ in _TYPES.items():
            if not isinstance(d.get(key), typ) or isinstance(d.get(key), bool):
                raise CacheError(f"{where}: manifest field {key!r} missing or not a {typ.__name__}; "
                                 f"rerun python -m features.build")
        if d["n_classes"] != len(d["classes"]) or len(d["shape"]) != 2:
            raise CacheError(f"{where}: inconsistent manifest (n_classes / shape); rerun python -m features.build")
        try:
            return cls(
                **{k: d[k] for k in (f.name for f in fields(cls)) if k not in _NESTED},
                shards=[Shard(**s) for s in d["shards"]],
                arrow=DataFile(**d["arrow"]),
                splits=DataFile(**d["splits"]),
                rejects=DataFile(**d["rejects"]),
                rejects_csv=DataFile(**d["rejects_csv"]),
                decode_rejects={i: DecodeReject(**r) for i, r in d["decode_rejects"].items()},
            )
        except TypeError as exc:
            raise CacheError(f"{where}: malformed manifest entry ({exc}); rerun python -m features.build") from None


_NESTED = ("shards", "arrow", "splits", "rejects", "rejects_csv", "decode_rejects")


def read_manifest(cache_dir: Path) -> Manifest | None:
    """The manifest of ``cache_dir``, or None when there is none (never built, or first build killed)."""
    p = cache_dir / MANIFEST
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"{p}: unreadable manifest ({exc})") from None
    return Manifest.from_json(text, str(p))


def write_manifest(cache_dir: Path, manifest: Manifest) -> None:
    """Publish a generation: one atomic ``os.replace`` of ``manifest.json``."""
    write_text(cache_dir / MANIFEST, manifest.to_json())


def verify_files(cache_dir: Path, files: Iterable[DataFile], checksums: bool = True) -> list[tuple[DataFile, str]]:
    """The files that are missing or (``checksums``) whose bytes differ from their sha256, with the problem."""
    bad = []
    for df in files:
        p = cache_dir / df.file
        if not p.is_file():
            bad.append((df, "missing"))
        elif checksums and sha256_file(p) != df.sha256:
            bad.append((df, "checksum mismatch (corrupt or modified)"))
    return bad
