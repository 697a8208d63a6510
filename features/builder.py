"""Building a cache generation: list -> plan -> featurise -> write -> publish.

:func:`build_cache` takes an exclusive lock on ``.build.lock`` (concurrent builds of one cache
are serialised; the second finds it up to date), then

1. :func:`list_inputs`   stat-fingerprints every record;
2. :func:`plan_build`    reads the current manifest and verifies its files (sha256), and decides
                         which rows are kept, which records must be (re)featurised, and why
                         (new / changed / rejected file changed / file repaired / --force);
3. :func:`featurise_new` decodes the records to do into new shards;
4. :func:`write_generation` writes the derived files (splits, rejects, Arrow copy) under new
                         names, swaps ``manifest.json`` with one ``os.replace`` and only then
                         deletes the files no manifest names.

A kill at any instant leaves the previous manifest and every file it names intact.
``FEATURES_BUILD_KILL_AT=<point>`` makes the build SIGKILL itself at one of :data:`KILL_POINTS`
(used by the tests to prove it).
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import signal
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.datasets import GROUP_KIND
from features.normalise import check_dataset
from features.datasets.base import AudioRecord, DatasetScan, Reject
from features.featurise import content_fingerprint, featurise_all, rows_to_table, stat_fingerprint
from features.frontend import Preset
from features.loader import read_shards
from features.manifest import (
    MANIFEST,
    MANIFEST_VERSION,
    DataFile,
    DecodeReject,
    Manifest,
    ManifestVersionError,
    Shard,
    read_manifest,
    verify_files,
    write_manifest,
)
from features.splits import DEFAULT_FRACTIONS, group_split, random_split
from features.keys import cache_dir_for, cache_key, inputs_hash
from features.store import (
    REJECTS_SCHEMA,
    SHARD_COMPRESSION,
    SPLITS_SCHEMA,
    BuildError,
    CacheError,
    generation_name,
    library_versions,
    remove_files_except,
    shard_schema,
    write_ipc,
    write_parquet,
    write_text,
)

KILL_ENV = "FEATURES_BUILD_KILL_AT"
KILL_POINTS = ("shard-written", "before-manifest", "after-manifest")


def _kill_point(name: str) -> None:
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class BuildSummary:
    """What a build did."""

    cache_dir: Path
    cache_key: str
    dataset: str
    preset: Preset
    n_scanned: int  # records listed by the adapter (after --limit)
    n_used: int  # rows in the table
    n_classes: int = 0
    n_processed: int = 0  # clips decoded and featurised in this run
    n_removed: int = 0  # rows dropped because their file disappeared or changed (the changed are in n_processed)
    n_changed: int = 0  # of n_removed, the files still there with new content (featurised again)
    rejects: list[Reject] = field(default_factory=list)  # all rejects and crops of the current table
    repairs: list[str] = field(default_factory=list)  # why files were rebuilt (corrupt, missing, old format)
    up_to_date: bool = False
    shape: tuple[int, int] = (0, 0)
    size_bytes: int = 0
    elapsed_s: float = 0.0
    rejects_csv: Path | None = None

    @property
    def n_rejected(self) -> int:
        return sum(1 for r in self.rejects if r.action == "rejected")

    @property
    def n_cropped(self) -> int:
        return sum(1 for r in self.rejects if r.action == "cropped")

    @property
    def rejects_by_reason(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rejects if r.action == "rejected"))


@dataclass(frozen=True)
class BuildRequest:
    """Everything one build is asked to do (see :func:`build_cache` for the meaning of each)."""

    scan: DatasetScan
    preset: Preset
    cache_dir: Path
    seed: int = 0
    fractions: tuple[float, ...] = tuple(DEFAULT_FRACTIONS)
    workers: int = 1
    shard_size: int = 4096
    limit: int | None = None
    progress: bool = True
    loader: Callable | None = None
    force: bool = False
    verify: bool = True


@dataclass
class Inputs:
    """The records to cache and their stat fingerprints."""

    records: list[AudioRecord]
    fingerprints: dict[str, str]
    scan_rejects: list[Reject]
    inputs_hash: str


@dataclass
class Plan:
    """What a build keeps from the current generation and what it must (re)do."""

    old: Manifest | None  # the generation to build on (None: from scratch)
    published: set[str] | None  # files the manifest on disk names (None: unknown, delete nothing)
    keep_shards: list[Shard]
    decode_rejects: dict[str, DecodeReject]
    todo: list[AudioRecord]
    n_removed: int
    n_changed: int
    repairs: list[str]
    up_to_date: bool


def build_cache(
    scan: DatasetScan,
    preset: Preset,
    out: Path | str,
    seed: int = 0,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    workers: int = 1,
    shard_size: int = 4096,
    limit: int | None = None,
    progress: bool = True,
    loader: Callable | None = None,
    force: bool = False,
    verify: bool = True,
) -> BuildSummary:
    """Featurise ``scan`` with ``preset`` into a cache directory under ``out`` (incremental, atomic).

    seed:       split seed (random and group splits)
    workers:    decoding processes (1 = in this process)
    shard_size: rows per Parquet shard
    limit:      keep only this many records, evenly spaced over the sorted ids
    loader:     ``load_audio``-compatible callable (default :func:`features.audio.load_audio`)
    force:      ignore the current generation: decode and write everything again
    verify:     check the sha256 of every file of the current generation (a file that fails is
                rebuilt and named in ``BuildSummary.repairs``); False checks only that they exist

    Raises :class:`BuildError` when no file is usable.
    """
    t0 = time.perf_counter()
    check_dataset(preset, scan.name, GROUP_KIND.get(scan.name))  # before any decoding
    cache_dir = cache_dir_for(out, scan.name, preset)
    cache_dir.mkdir(parents=True, exist_ok=True)
    req = BuildRequest(scan, preset, cache_dir, seed, tuple(fractions), workers, shard_size, limit, progress,
                       loader, force, verify)
    with open(cache_dir / ".build.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            inputs = list_inputs(req)
            plan = plan_build(req, inputs)
            if plan.published is not None:  # orphans of killed builds go; what the manifest names stays
                remove_files_except(cache_dir, plan.published)
            if plan.up_to_date:
                return summarise(req, plan.old, len(inputs.records), t0, plan, up_to_date=True)
            new_shards, decode_rejects = featurise_new(req, plan, inputs)
            manifest = write_generation(req, inputs, plan.keep_shards + new_shards, decode_rejects)
            return summarise(req, manifest, len(inputs.records), t0, plan, up_to_date=False)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _limit_records(records: list[AudioRecord], limit: int | None) -> list[AudioRecord]:
    records = sorted(records, key=lambda r: r.id)
    if limit is None or limit >= len(records):
        return records
    if limit <= 0:
        raise ValueError(f"limit must be > 0, got {limit}")
    # evenly spaced over the sorted ids: every class / speaker stays represented
    idx = np.unique(np.linspace(0, len(records) - 1, limit).round().astype(int))
    return [records[i] for i in idx]


def list_inputs(req: BuildRequest) -> Inputs:
    """The records of the scan (after ``limit``) and their stat fingerprints.

    A record whose file cannot be stat'ed becomes a scan reject; duplicate ids are a BuildError.
    """
    records = _limit_records(list(req.scan.records), req.limit)
    dup = [k for k, c in Counter(r.id for r in records).items() if c > 1]
    if dup:
        raise BuildError(f"dataset {req.scan.name!r} lists duplicate ids, e.g. {dup[:3]}")
    fps: dict[str, str] = {}
    scan_rejects = list(req.scan.rejects)
    for r in records:
        try:
            fps[r.id] = stat_fingerprint(r)
        except OSError as exc:
            scan_rejects.append(Reject(r.id, str(r.path), f"unreadable: {exc.strerror or exc}", "rejected"))
    return Inputs([r for r in records if r.id in fps], fps, scan_rejects, inputs_hash(fps))


def _current_generation(req: BuildRequest, repairs: list[str]) -> tuple[Manifest | None, set[str] | None]:
    """The manifest to build on, or None (none yet, --force, another format or another preset),
    and the files the manifest on disk names (None when it cannot be read: nothing is deleted)."""
    try:
        old = read_manifest(req.cache_dir)
    except ManifestVersionError as exc:
        repairs.append(f"rebuilt from scratch: {MANIFEST} of version {exc.found}, this code reads version "
                       f"{MANIFEST_VERSION}")
        return None, None
    except CacheError as exc:  # unreadable or invalid manifest: the files it named are unknown
        repairs.append(f"rebuilt from scratch: {exc}")
        return None, None
    if old is None:
        return None, set()
    published = {f.file for f in old.data_files()}
    if req.force:
        repairs.append("rebuilt from scratch: --force")
        return None, published
    if old.preset != req.preset.to_dict():
        repairs.append("rebuilt from scratch: the preset's description changed")
        return None, published
    return old, published


def plan_build(req: BuildRequest, inputs: Inputs) -> Plan:
    """Compare the inputs with the current generation (verifying its files) and decide what to do."""
    repairs: list[str] = []
    old, published = _current_generation(req, repairs)
    fps = inputs.fingerprints
    bad = dict((df.file, problem) for df, problem in verify_files(req.cache_dir, old.data_files(), req.verify)) \
        if old else {}
    keep_shards, n_removed, n_changed = [], 0, 0
    for sh in old.shards if old else []:
        if sh.file in bad:
            repairs.append(f"{sh.file}: {bad[sh.file]}; its {len(sh.ids)} row(s) featurised again")
            continue
        live = [i for i in sh.ids if fps.get(i) == old.fingerprints.get(i)]
        n_removed += len(sh.ids) - len(live)
        n_changed += sum(1 for i in sh.ids if i in fps and fps[i] != old.fingerprints.get(i))
        if live:
            keep_shards.append(replace(sh, ids=live))
    repairs += [f"{name}: {problem}; rewritten" for name, problem in bad.items() if not name.startswith("shard-")]
    decode_rejects = {}
    for i, rej in (old.decode_rejects if old else {}).items():
        if fps.get(i) == old.fingerprints.get(i) and content_fingerprint(rej.path) == rej.content:
            decode_rejects[i] = rej
    have = {i for sh in keep_shards for i in sh.ids}
    todo = [r for r in inputs.records if r.id not in have and r.id not in decode_rejects]
    up_to_date = (
        old is not None
        and not todo
        and not bad
        and n_removed == 0
        and len(keep_shards) == len(old.shards)
        and len(decode_rejects) == len(old.decode_rejects)
        and old.inputs_hash == inputs.inputs_hash
        and old.split_seed == req.seed
        and list(old.fractions) == list(req.fractions)
        and old.scan_rejects == [r.__dict__ for r in inputs.scan_rejects]
    )
    return Plan(old, published, keep_shards, decode_rejects, todo, n_removed, n_changed, repairs, up_to_date)


def featurise_new(req: BuildRequest, plan: Plan, inputs: Inputs) -> tuple[list[Shard], dict[str, DecodeReject]]:
    """Decode ``plan.todo`` into new shards (``shard_size`` rows each); returns them and all decode rejects."""
    meta = {
        "preset": req.preset.to_json(),
        "dataset": req.scan.name,
        "dataset_root": str(req.scan.root),
        "inputs_hash": inputs.inputs_hash,
        "versions": json.dumps(library_versions(), sort_keys=True),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spectrogram_shape": str(list(req.preset.shape)),
        "spectrogram_dtype": "float16",
    }
    schema = shard_schema(req.preset.shape, meta)
    new_shards: list[Shard] = []
    decode_rejects = dict(plan.decode_rejects)
    buf: list[dict[str, Any]] = []
    shard_no = 1 + max([int(sh.file.split("-")[1]) for sh in plan.keep_shards], default=-1)

    def flush() -> None:
        nonlocal shard_no
        if buf:
            name = f"shard-{shard_no:05d}-{uuid.uuid4().hex[:8]}.parquet"
            digest = write_parquet(req.cache_dir / name, rows_to_table(buf, schema), compression=SHARD_COMPRESSION)
            new_shards.append(Shard(name, digest, [r["id"] for r in buf]))
            shard_no += 1
            buf.clear()
            _kill_point("shard-written")

    for row in featurise_all(plan.todo, req.preset, req.workers, req.progress, req.loader):
        rej = row.pop("reject", None)
        if "spectrogram" not in row:
            decode_rejects[rej.id] = DecodeReject(rej.path, rej.reason, content_fingerprint(rej.path))
            continue
        buf.append(row)
        if len(buf) >= req.shard_size:
            flush()
    flush()
    return new_shards, decode_rejects


def _no_usable_file(req: BuildRequest, inputs: Inputs, decode_rejects: dict[str, DecodeReject]) -> BuildError:
    reasons = Counter(r.reason for r in decode_rejects.values()) + Counter(r.reason for r in inputs.scan_rejects)
    top = ", ".join(f"{k} ({v})" for k, v in reasons.most_common(3))
    return BuildError(
        f"no usable audio file in {req.scan.root} for dataset {req.scan.name!r}: "
        f"{len(inputs.records)} listed, {len(decode_rejects) + len(inputs.scan_rejects)} rejected"
        + (f" [{top}]" if top else "")
    )


def _cropped_rows(cache_dir: Path, shards: list[Shard]) -> list[tuple[str, str]]:
    out = []
    for sh in shards:
        t = pq.read_table(cache_dir / sh.file, columns=["id", "path", "cropped"])
        live = set(sh.ids)
        out += [(i, p) for i, p, c in zip(*(t[k].to_pylist() for k in ("id", "path", "cropped"))) if c and i in live]
    return sorted(out)


def _write_rejects(cache_dir: Path, rejects: list[Reject]) -> tuple[DataFile, DataFile]:
    cols = {k: pa.array([getattr(r, k) for r in rejects], pa.string()) for k in ("id", "path", "reason", "action")}
    name = generation_name("rejects", ".parquet")
    table = DataFile(name, write_parquet(cache_dir / name, pa.table(cols, schema=REJECTS_SCHEMA)))
    sio = io.StringIO()
    w = csv.writer(sio)
    w.writerow(["id", "path", "reason", "action"])
    for r in rejects:
        w.writerow([r.id, r.path, r.reason, r.action])
    name_csv = generation_name("rejects", ".csv")
    return table, DataFile(name_csv, write_text(cache_dir / name_csv, sio.getvalue()))


def _write_splits(req: BuildRequest, live_ids: list[str], groups: list[str]) -> tuple[DataFile, list[str]]:
    """Splits over all live ids (a pure function of seed + ids/groups) and the warnings they raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s_rand = random_split(live_ids, req.seed, req.fractions)
        s_group = group_split(live_ids, groups, req.seed, req.fractions)
    table = pa.Table.from_arrays(
        [pa.array(live_ids, pa.string()), pa.array(s_rand, pa.string()), pa.array(s_group, pa.string())],
        schema=SPLITS_SCHEMA,
    )
    name = generation_name("splits", ".parquet")
    return DataFile(name, write_parquet(req.cache_dir / name, table)), [str(w.message) for w in caught]


def write_generation(
    req: BuildRequest, inputs: Inputs, shards: list[Shard], decode_rejects: dict[str, DecodeReject]
) -> Manifest:
    """Write splits, rejects and the Arrow copy under new names, then publish the manifest.

    Files of the previous generation that the new manifest does not name are deleted only
    after the swap.
    """
    live_ids = sorted(i for sh in shards for i in sh.ids)
    if not live_ids:
        raise _no_usable_file(req, inputs, decode_rejects)
    rec_by_id = {r.id: r for r in inputs.records}
    rejects = list(inputs.scan_rejects)
    rejects += [Reject(i, r.path, r.reason, "rejected") for i, r in sorted(decode_rejects.items())]
    rejects += [Reject(i, p, f"longer than {req.preset.duration_s:g} s: cropped", "cropped")
                for i, p in _cropped_rows(req.cache_dir, shards)]
    splits, split_warnings = _write_splits(req, live_ids, [rec_by_id[i].group for i in live_ids])
    rejects_file, rejects_csv = _write_rejects(req.cache_dir, rejects)
    arrow_name = generation_name("table", ".arrow")
    arrow_table = read_shards(req.cache_dir, shards).combine_chunks()
    arrow = DataFile(arrow_name, write_ipc(req.cache_dir / arrow_name, arrow_table))
    manifest = Manifest(
        generation=uuid.uuid4().hex[:12],
        dataset=req.scan.name,
        dataset_root=str(req.scan.root),
        preset=req.preset.to_dict(),
        preset_digest=req.preset.digest(),
        inputs_hash=inputs.inputs_hash,
        cache_key=cache_key(req.preset, inputs.inputs_hash, live_ids),
        split_seed=req.seed,
        fractions=list(req.fractions),
        split_warnings=split_warnings,
        n_rows=len(live_ids),
        classes=sorted({rec_by_id[i].label for i in live_ids}),
        shape=list(req.preset.shape),
        spectrogram_dtype="float16",
        shards=shards,
        arrow=arrow,
        splits=splits,
        rejects=rejects_file,
        rejects_csv=rejects_csv,
        fingerprints={i: inputs.fingerprints[i] for i in sorted(set(live_ids) | set(decode_rejects))},
        decode_rejects=dict(sorted(decode_rejects.items())),
        scan_rejects=[r.__dict__ for r in inputs.scan_rejects],
        versions=library_versions(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    _kill_point("before-manifest")
    write_manifest(req.cache_dir, manifest)
    _kill_point("after-manifest")
    remove_files_except(req.cache_dir, {f.file for f in manifest.data_files()})
    return manifest


def summarise(
    req: BuildRequest, m: Manifest, n_scanned: int, t0: float, plan: Plan, up_to_date: bool
) -> BuildSummary:
    """The :class:`BuildSummary` of generation ``m`` (rejects and crops read back from its rejects file)."""
    t = pq.read_table(req.cache_dir / m.rejects.file)
    rejects = [Reject(*row) for row in zip(*(t[c].to_pylist() for c in ("id", "path", "reason", "action")))]
    files = [req.cache_dir / f.file for f in m.data_files()] + [req.cache_dir / MANIFEST]
    return BuildSummary(
        cache_dir=req.cache_dir,
        cache_key=m.cache_key,
        dataset=m.dataset,
        preset=req.preset,
        n_scanned=n_scanned,
        n_used=m.n_rows,
        n_classes=m.n_classes,
        n_processed=0 if up_to_date else len(plan.todo),
        n_removed=0 if up_to_date else plan.n_removed,
        n_changed=0 if up_to_date else plan.n_changed,
        rejects=rejects,
        repairs=list(plan.repairs),
        up_to_date=up_to_date,
        shape=(int(m.shape[0]), int(m.shape[1])),
        size_bytes=sum(p.stat().st_size for p in files if p.is_file()),
        elapsed_s=time.perf_counter() - t0,
        rejects_csv=req.cache_dir / m.rejects_csv.file,
    )
