"""Reading a cache: :func:`load_table` (the whole table) and :func:`read_cache_info` (the manifest only).

Readers resolve every file through the manifest they read. A build publishes a new generation by
swapping ``manifest.json`` and deletes the previous generation's files afterwards, so a reader
that finds a listed file gone re-reads the manifest and, when a new generation was published in
between, loads that one: a concurrent reader sees one complete generation or the other.
"""
from __future__ import annotations

import dataclasses
import errno
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from features.frontend import Preset
from features.normalise import apply_speaker_statistics, speaker_statistics
from features.voice import VOICE_BANDS, fit_voices
from features.manifest import MANIFEST, DataFile, Manifest, Shard, read_manifest, verify_files
from features.store import CacheError, fixed_list_tensor, read_arrow_mmap
from features.splits import rotate_validation
from features.table import FeatureTable

SPLIT_SCHEMES = ("random", "group")
SOURCES = ("auto", "arrow", "parquet")
_COLUMNS = ["id", "label", "group", "spectrogram", "mask", "norm_stats", "voice"]
_ATTEMPTS = 3  # generations a reader may see published while it loads


@dataclass(frozen=True)
class CacheInfo:
    """What the manifest says about a cache, without reading any data file."""

    cache_dir: Path
    dataset: str
    preset: Preset
    classes: list[str]
    n_classes: int
    cache_key: str
    n_rows: int
    shape: tuple[int, int]
    split_seed: int
    generation: str
    created: str


def find_cache_dirs(out: Path | str) -> list[Path]:
    """Cache directories (holding a ``manifest.json`` with a cache key) directly under ``out``."""
    found = []
    for p in sorted(Path(out).glob(f"*/{MANIFEST}")):
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(m, dict) and "cache_key" in m:
            found.append(p.parent)
    return found


def resolve_cache_dir(cache_dir: Path | str) -> Path:
    """``cache_dir`` itself, or the one cache inside a build ``--out`` directory (else CacheError)."""
    cache_dir = Path(cache_dir)
    if (cache_dir / MANIFEST).exists():
        return cache_dir
    found = find_cache_dirs(cache_dir) if cache_dir.is_dir() else []
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CacheError(f"{cache_dir} holds several caches; pass one of: {', '.join(p.name for p in found)}")
    if cache_dir.is_dir() and any(cache_dir.glob("shard-*.parquet")):
        raise CacheError(f"{cache_dir} has no {MANIFEST}: the build did not complete (killed?); "
                         f"rerun python -m features.build")
    raise CacheError(f"{cache_dir} is not a feature cache (no {MANIFEST}); build one with python -m features.build")


def _manifest(cache_dir: Path) -> Manifest:
    m = read_manifest(cache_dir)
    if m is None:
        raise CacheError(f"{cache_dir}: {MANIFEST} disappeared; rerun python -m features.build")
    return m


def read_cache_info(cache_dir: Path | str) -> CacheInfo:
    """Dataset, preset, classes, key and size of a cache, from its manifest alone (cheap)."""
    cache_dir = resolve_cache_dir(cache_dir)
    m = _manifest(cache_dir)
    return CacheInfo(cache_dir, m.dataset, Preset.from_dict(m.preset), list(m.classes), m.n_classes, m.cache_key,
                     m.n_rows, (int(m.shape[0]), int(m.shape[1])), m.split_seed, m.generation, m.created)


def read_shards(cache_dir: Path, shards: list[Shard], columns: list[str] | None = None) -> pa.Table:
    """The live rows of ``shards``, sorted by id (memory-mapped Parquet reads)."""
    tables = []
    for sh in shards:
        tab = pq.read_table(cache_dir / sh.file, memory_map=True, columns=columns)
        if len(sh.ids) != tab.num_rows:
            tab = tab.filter(pc.is_in(tab["id"], value_set=pa.array(sh.ids, pa.string())))
        tables.append(tab)
    tab = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    ids = tab["id"].to_numpy().astype(str)
    if len(ids) > 1 and not np.all(ids[:-1] < ids[1:]):
        tab = tab.take(pa.array(np.argsort(ids, kind="stable")))
    return tab


def _check(cache_dir: Path, files: list[DataFile], verify: bool) -> None:
    """CacheError naming the first listed file that is missing or (``verify``) fails its sha256."""
    for df, problem in verify_files(cache_dir, files, checksums=verify)[:1]:
        if problem == "missing":
            raise FileNotFoundError(errno.ENOENT, "missing", str(cache_dir / df.file))
        raise CacheError(f"{cache_dir / df.file}: {problem}; rerun python -m features.build to repair the cache "
                         f"(or load with verify=False)")


def _read_rows(cache_dir: Path, m: Manifest, source: str, verify: bool) -> pa.Table:
    arrow_present = (cache_dir / m.arrow.file).is_file()
    if source == "arrow" and not arrow_present:
        raise CacheError(f"{cache_dir}: the Arrow copy {m.arrow.file} listed in the manifest is missing; "
                         f"rerun python -m features.build")
    if source == "arrow" or (source == "auto" and arrow_present):
        _check(cache_dir, [m.arrow], verify)
        return read_arrow_mmap(cache_dir / m.arrow.file).select(_COLUMNS)
    _check(cache_dir, list(m.shards), verify)
    return read_shards(cache_dir, m.shards, _COLUMNS)


def _split_column(cache_dir: Path, m: Manifest, ids: np.ndarray, scheme: str, verify: bool) -> np.ndarray:
    _check(cache_dir, [m.splits], verify)
    sp = pq.read_table(cache_dir / m.splits.file)
    sp_ids = np.asarray(sp["id"].to_pylist(), dtype=object).astype(str)
    sp_val = np.asarray(sp[f"split_{scheme}"].to_pylist(), dtype=object).astype(str)
    pos = {k: n for n, k in enumerate(sp_ids)}
    try:
        return sp_val[[pos[i] for i in ids]]
    except KeyError as exc:
        raise CacheError(f"{cache_dir}: id {exc} has no split; rerun python -m features.build") from None


def with_voices(preset: Preset, voices: int | None) -> Preset:
    """``preset`` clustering its clips into ``voices`` voices (0 or None: the preset's own count, as the
    config key ``voices`` 0). The count
    is a load-time setting (the cache stores the voice profiles, not the voices), so a cache serves
    any count; ValueError for a front end that infers no voices or a count below 2."""
    if not voices or voices == preset.voices:
        return preset
    if preset.normalisation != "voice":
        raise ValueError(f"voices={voices}: front end {preset.name!r} has {preset.normalisation} normalisation; "
                         f"voices is for a front end normalised per inferred speaker (e.g. awe_voice)")
    return dataclasses.replace(preset, voices=int(voices))


def _load_generation(cache_dir: Path, m: Manifest, split_scheme: str, source: str, verify: bool,
                     voices: int | None = None, val_fold: int = 0) -> FeatureTable:
    preset = with_voices(Preset.from_dict(m.preset), voices)
    f, t = preset.shape
    tab = _read_rows(cache_dir, m, source, verify)
    if tab.num_rows != m.n_rows:
        raise CacheError(f"{cache_dir}: {tab.num_rows} rows found, manifest says {m.n_rows}; "
                         f"rerun python -m features.build")
    ids = tab["id"].to_numpy().astype(str)
    if len(ids) > 1 and not np.all(ids[:-1] < ids[1:]):
        raise CacheError(f"{cache_dir}: rows are not sorted by unique id; rerun python -m features.build")
    n = len(ids)
    split = _split_column(cache_dir, m, ids, split_scheme, verify)
    if val_fold:
        split = rotate_validation(split, ids, val_fold, m.split_seed)
    labels = tab["label"].to_numpy().astype(str)
    classes_arr, inverse = np.unique(labels, return_inverse=True)
    if [str(c) for c in classes_arr] != m.classes:
        raise CacheError(f"{cache_dir}: the rows' labels differ from the manifest's classes; "
                         f"rerun python -m features.build")
    spectrogram = fixed_list_tensor(tab["spectrogram"], (n, f, t))
    mask = fixed_list_tensor(tab["mask"], (n, t))
    groups = tab["group"].to_numpy().astype(str)
    voice = fixed_list_tensor(tab["voice"], (n, VOICE_BANDS))
    speakers, voice_model = None, None  # under "voice": the speakers inferred from the voice profiles
    if preset.normalisation == "voice":
        voice_model, speakers = fit_voices(voice, preset.voices)
    if preset.per_speaker:  # stored un-normalised: the statistics need every clip of a speaker
        who = groups if speakers is None else speakers
        names, mean, std = speaker_statistics(spectrogram, mask, who)
        spectrogram = apply_speaker_statistics(spectrogram, mask, who, names, mean, std).to(torch.float16)
        if voice_model is not None:  # the same statistics, kept to normalise a new clip as its voice
            voice_model = voice_model.with_statistics(names, mean, std)
    return FeatureTable(
        ids=ids,
        spectrogram=spectrogram,
        mask=mask,
        norm_stats=fixed_list_tensor(tab["norm_stats"], (n, 4)),
        labels=labels,
        label_index=torch.from_numpy(inverse.astype(np.int64).reshape(-1)),
        classes=[str(c) for c in classes_arr],
        groups=groups,
        split=split,
        preset=preset,
        cache_key=m.cache_key,
        dataset=m.dataset,
        voice=voice,
        speakers=speakers,
        voice_model=voice_model,
        val_fold=int(val_fold),
    )


def load_generation(cache_dir: Path, m: Manifest, split_scheme: str, source: str, verify: bool,
                    voices: int | None = None, val_fold: int = 0) -> FeatureTable:
    """The table of generation ``m``; when its files are gone because a build published a newer
    generation since ``m`` was read, the newer one (a CacheError when the file is just missing)."""
    for _ in range(_ATTEMPTS):
        try:
            return _load_generation(cache_dir, m, split_scheme, source, verify, voices, val_fold)
        except FileNotFoundError as exc:
            now = _manifest(cache_dir)
            if now.generation == m.generation:
                missing = exc.filename or (exc.args[0] if exc.args else cache_dir)
                raise CacheError(f"{missing}: listed in the manifest but missing; "
                                 f"rerun python -m features.build") from None
            m = now  # a build published a new generation meanwhile: load that one
    raise CacheError(f"{cache_dir}: {_ATTEMPTS} generations published while loading; try again")


def load_table(
    cache_dir: Path | str,
    split_scheme: str = "random",
    device: torch.device | str | None = None,
    source: str = "auto",
    verify: bool = True,
    voices: int | None = None,
    val_fold: int = 0,
) -> FeatureTable:
    """Load a cache into a :class:`FeatureTable` (rows sorted by id).

    ``cache_dir`` is a cache directory, or a build ``--out`` directory holding exactly one.
    ``split_scheme``: ``"random"`` (the papers' 80/10/10) or ``"group"`` (group-disjoint).
    ``source``: ``"auto"`` reads the consolidated Arrow IPC copy through a copy-on-write memory
    map, zero-copy (see ``benchmarks/features_bench.py`` for the figures against Parquet),
    falling back to the Parquet shards when it is missing; ``"parquet"`` / ``"arrow"`` force one.
    ``verify``: check the sha256 of every file read against the manifest (a mismatch is a
    CacheError naming the file); ``False`` skips it for huge caches (see the benchmark for the cost).
    ``voices``: on a front end normalised per inferred speaker, how many voices its clips are
    clustered into (0 or None: the preset's count; the table's ``preset`` then carries the count used);
    ValueError on any other front end.
    ``val_fold``: the random split's validation fold (features.splits.rotate_validation; 0: the split as
    stored); ValueError on the group split or for a fold the split does not offer.
    """
    if split_scheme not in SPLIT_SCHEMES:
        raise ValueError(f"split_scheme must be one of {SPLIT_SCHEMES}, got {split_scheme!r}")
    if val_fold and split_scheme != "random":
        raise ValueError(f"val_fold={val_fold}: validation folds rotate the random split only, not {split_scheme!r} "
                         f"(its validation speakers are a group of their own)")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    cache_dir = resolve_cache_dir(cache_dir)
    table = load_generation(cache_dir, _manifest(cache_dir), split_scheme, source, verify, voices, val_fold)
    if device is not None:
        table.spectrogram, table.mask, table.norm_stats, table.label_index = (
            x.to(device) for x in (table.spectrogram, table.mask, table.norm_stats, table.label_index))
    return table
