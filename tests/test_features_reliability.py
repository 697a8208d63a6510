"""Cache reliability: each test first reproduces a fault, then checks how load and build handle it.

Faults: corrupt bytes inside the Arrow copy (same size), a truncated Arrow copy, a garbage shard,
an old manifest version, a build SIGKILLed at every publication step, a reader racing builds, a
rejected file fixed in place with its size and mtime kept, and ``--force``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from features.build import main
from features.builder import KILL_ENV, KILL_POINTS
from features.cache import CacheError, build_cache, load_table, read_cache_info
from features.datasets.base import AudioRecord
from features.loader import load_generation
from features.manifest import MANIFEST, read_manifest
from tests.test_build_cli import REPO, write_fsdd_layout
from tests.test_cache import PRESET, make_dataset, scan_of


def _build(src: Path, out: Path, recs, **kw):
    return build_cache(scan_of(src, recs), PRESET, out, shard_size=4, progress=False, **kw)


def _same(a, b) -> None:
    assert list(a.ids) == list(b.ids) and a.cache_key == b.cache_key
    assert torch.equal(a.spectrogram, b.spectrogram) and torch.equal(a.norm_stats, b.norm_stats)
    assert np.array_equal(a.split, b.split)


@pytest.fixture()
def built(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    recs = make_dataset(src, 10)
    s = _build(src, out, recs)
    return src, out, recs, s, load_table(s.cache_dir, source="parquet")


def test_corrupt_bytes_inside_the_arrow_copy(built):
    src, out, recs, s, reference = built
    arrow = s.cache_dir / read_manifest(s.cache_dir).arrow.file
    data = bytearray(arrow.read_bytes())
    size = len(data)
    mid = size // 2
    data[mid:mid + 64] = bytes(255 - b for b in data[mid:mid + 64])  # same size, different bytes
    arrow.write_bytes(bytes(data))
    assert arrow.stat().st_size == size
    with pytest.raises(CacheError, match=arrow.name) as ei:
        load_table(s.cache_dir)
    assert "features.build" in str(ei.value)
    assert len(load_table(s.cache_dir, verify=False)) == 10  # the opt-out reads it as it is
    r = _build(src, out, recs)
    assert not r.up_to_date and r.n_processed == 0
    assert any(arrow.name in line and "checksum" in line for line in r.repairs), r.repairs
    _same(load_table(s.cache_dir), reference)
    assert not arrow.exists()  # the repaired generation replaced it


def test_truncated_arrow_copy(built):
    src, out, recs, s, reference = built
    arrow = s.cache_dir / read_manifest(s.cache_dir).arrow.file
    with open(arrow, "r+b") as fh:
        fh.truncate(arrow.stat().st_size // 3)
    with pytest.raises(CacheError, match=arrow.name):
        load_table(s.cache_dir)
    r = _build(src, out, recs)
    assert not r.up_to_date and any(arrow.name in line for line in r.repairs)
    _same(load_table(s.cache_dir), reference)
    assert _build(src, out, recs).up_to_date


def test_garbage_shard_is_featurised_again(built):
    src, out, recs, s, reference = built
    shard = read_manifest(s.cache_dir).shards[1]
    path = s.cache_dir / shard.file
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    with pytest.raises(CacheError, match=shard.file):
        load_table(s.cache_dir, source="parquet")
    r = _build(src, out, recs)
    assert not r.up_to_date and r.n_processed == len(shard.ids)
    assert any(shard.file in line for line in r.repairs), r.repairs
    _same(load_table(s.cache_dir, source="parquet"), reference)
    _same(load_table(s.cache_dir), reference)


def test_missing_shard_is_featurised_again_even_without_verify(built):
    src, out, recs, s, reference = built
    shard = read_manifest(s.cache_dir).shards[0]
    (s.cache_dir / shard.file).unlink()
    with pytest.raises(CacheError, match=f"{shard.file}: listed in the manifest but missing"):
        load_table(s.cache_dir, source="parquet")
    r = _build(src, out, recs, verify=False)
    assert r.n_processed == len(shard.ids)
    _same(load_table(s.cache_dir), reference)


def test_old_manifest_version_is_refused_on_load_and_rebuilt(built):
    src, out, recs, s, reference = built
    p = s.cache_dir / MANIFEST
    d = json.loads(p.read_text())
    d["version"] = 1
    p.write_text(json.dumps(d))
    with pytest.raises(CacheError, match=r"version 1 .*rerun python -m features.build"):
        load_table(s.cache_dir)
    r = _build(src, out, recs)
    assert r.n_processed == 10 and any("version 1" in line for line in r.repairs), r.repairs
    _same(load_table(s.cache_dir), reference)


def test_garbage_manifest_is_refused_on_load_and_rebuilt(built):
    src, out, recs, s, reference = built
    (s.cache_dir / MANIFEST).write_text('{"version": 2, "cache_key": "x", "shards": [', encoding="utf-8")
    with pytest.raises(CacheError, match="unreadable manifest.*rerun python -m features.build"):
        load_table(s.cache_dir)
    r = _build(src, out, recs)
    assert r.n_processed == 10 and any("unreadable manifest" in line for line in r.repairs), r.repairs
    _same(load_table(s.cache_dir), reference)
    named = {f.file for f in read_manifest(s.cache_dir).data_files()}
    assert {p.name for p in s.cache_dir.iterdir() if p.name.startswith(("shard-", "table-"))} <= named


def test_cache_info_reads_the_manifest_only(built):
    src, out, recs, s, reference = built
    m = read_manifest(s.cache_dir)
    for f in m.data_files():
        (s.cache_dir / f.file).unlink()
    info = read_cache_info(out)
    assert (info.dataset, info.n_rows, info.shape, info.cache_key) == ("toy", 10, (64, 32), s.cache_key)
    assert info.classes == reference.classes == ["0", "1", "2"] and info.n_classes == 3
    assert reference.dataset == "toy" and reference.n_classes == 3
    assert json.loads((s.cache_dir / MANIFEST).read_text())["n_classes"] == 3


def test_rejected_file_is_retried_when_fixed_with_the_same_size_and_mtime(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    recs = make_dataset(src, 5)
    good = make_dataset(tmp_path / "spare", 1, start=7)[0].path.read_bytes()
    bad = src / "fixed.wav"
    bad.write_bytes(np.random.default_rng(1).bytes(len(good)))  # same size, not audio
    mtime = bad.stat().st_mtime_ns
    rec = AudioRecord("fixed", bad, "1", "spk9")
    s1 = _build(src, out, recs + [rec])
    assert s1.n_used == 5 and "fixed" in {r.id for r in s1.rejects}
    assert _build(src, out, recs + [rec]).up_to_date  # unchanged reject: not decoded again
    bad.write_bytes(good)
    os.utime(bad, ns=(mtime, mtime))
    assert bad.stat().st_size == len(good) and bad.stat().st_mtime_ns == mtime
    s2 = _build(src, out, recs + [rec])
    assert not s2.up_to_date and s2.n_processed == 1 and s2.n_used == 6
    assert s2.cache_key != s1.cache_key  # the table changed, so does its key
    assert "fixed" in set(load_table(out).ids) and s2.n_rejected == 0


def test_audio_edited_with_the_same_size_and_mtime_is_featurised_again(tmp_path):
    """``cp -p``, ``rsync -t``, an unpacked archive: new content under the old size and mtime."""
    src, out = tmp_path / "src", tmp_path / "out"
    recs = make_dataset(src, 6)
    s1 = _build(src, out, recs)
    other = make_dataset(tmp_path / "spare", 1, start=9)[0].path.read_bytes()
    edited = recs[2].path
    st = edited.stat()
    data = bytearray(edited.read_bytes())
    data[44:] = (other[44:] + bytes(len(data)))[:len(data) - 44]  # same WAV header, other samples
    edited.write_bytes(bytes(data))
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (edited.stat().st_size, edited.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    s2 = _build(src, out, recs)
    assert not s2.up_to_date and s2.n_processed == 1
    assert s2.cache_key != s1.cache_key  # resume and replicate see another cache
    fresh = _build(src, tmp_path / "fresh", recs)
    _same(load_table(s2.cache_dir, source="parquet"), load_table(fresh.cache_dir, source="parquet"))
    assert _build(src, out, recs).up_to_date  # and unchanged content stays up to date


def test_force_rebuilds_everything(tmp_path, capsys):
    root = write_fsdd_layout(tmp_path / "fsdd", 12)
    args = ["--dataset", "fsdd", "--root", str(root), "--preset", "compact", "--out", str(tmp_path / "out"),
            "--no-progress"]
    assert main(args) == 0
    before = load_table(tmp_path / "out")
    capsys.readouterr()
    assert main([*args, "--force"]) == 0
    text = capsys.readouterr().out
    assert "repaired: rebuilt from scratch: --force" in text and "12 file(s) processed" in text
    after = load_table(tmp_path / "out")
    _same(after, before)
    assert main([*args, "--no-verify"]) == 0 and "up to date" in capsys.readouterr().out


@pytest.mark.parametrize("point,extra", [(p, []) for p in KILL_POINTS] + [("before-manifest", ["--force"])])
def test_build_killed_at_each_publication_step_leaves_a_complete_cache(tmp_path, point, extra):
    root = write_fsdd_layout(tmp_path / "fsdd", 12)
    out = tmp_path / "out"
    args = ["--dataset", "fsdd", "--root", str(root), "--preset", "compact", "--out", str(out), "--no-progress",
            "--shard-size", "4"]
    assert main(args) == 0
    first = load_table(out)
    write_fsdd_layout(root, 8, start=12)
    proc = subprocess.run([sys.executable, "-m", "features.build", *args, *extra], cwd=REPO, capture_output=True,
                          env={**os.environ, KILL_ENV: point}, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-500:]
    after = load_table(out)  # verified: every file the manifest names is intact
    if point == "after-manifest":
        assert len(after) == 20  # published before the kill
    else:
        _same(after, first)
    assert main(args) == 0
    rebuilt = load_table(out)
    assert len(rebuilt) == 20
    cache_dir = next(p for p in out.iterdir() if (p / MANIFEST).exists())
    named = {f.file for f in read_manifest(cache_dir).data_files()}
    on_disk = {p.name for p in cache_dir.iterdir() if p.name not in (MANIFEST, ".build.lock")}
    assert on_disk == named  # orphans of the killed build are gone


def test_a_reader_holding_a_replaced_manifest_loads_the_new_generation(built):
    src, out, recs, s, reference = built
    stale = read_manifest(s.cache_dir)
    more = make_dataset(src, 3, start=10)
    _build(src, out, recs + more)  # publishes a new generation and deletes the stale one's Arrow copy
    assert not (s.cache_dir / stale.arrow.file).exists()
    table = load_generation(s.cache_dir, stale, "random", "auto", True)
    assert len(table) == 13 and table.cache_key == read_manifest(s.cache_dir).cache_key
    splits = read_manifest(s.cache_dir).splits.file
    (s.cache_dir / splits).unlink()  # missing, and no newer generation to turn to
    with pytest.raises(CacheError, match=f"{splits}: listed in the manifest but missing"):
        load_generation(s.cache_dir, read_manifest(s.cache_dir), "random", "auto", True)


def test_a_reader_racing_builds_always_sees_one_complete_generation(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    recs = make_dataset(src, 6)
    _build(src, out, recs)
    more = make_dataset(src, 9, start=6)
    sizes, errors, done = [], [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                sizes.append(len(load_table(out)))
            except Exception as exc:  # noqa: BLE001 - any failure is what the test reports
                errors.append(repr(exc))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for k in range(1, 4):
            _build(src, out, recs + more[: 3 * k])
    finally:
        done.set()
        t.join()
    assert not errors, errors[:3]
    assert sizes and set(sizes) <= {6, 9, 12, 15}
