"""Feature cache: round trip, schema, incrementality, rejects, incomplete caches."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from features.build import format_summary
from features.cache import BuildError, CacheError, build_cache, cache_dir_for, load_table
from features.datasets.base import AudioRecord, DatasetScan
from features.manifest import read_manifest
from features.frontend import compute_features, get_preset

PRESET = get_preset("compact")  # 64 x 32, 16 kHz, 1 s


def write_wav(path: Path, seconds: float, rate: int = 16000, freq: float = 440.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * math.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), rate, subtype="PCM_16")
    return path


def make_dataset(root: Path, n: int, start: int = 0) -> list[AudioRecord]:
    recs = []
    for i in range(start, start + n):
        label = str(i % 3)
        group = f"spk{i % 5}"
        p = write_wav(root / f"{label}_{group}_{i}.wav", 0.3 + 0.05 * (i % 10), rate=(8000, 16000, 22050)[i % 3],
                      freq=300.0 + 200 * (i % 3), seed=i)
        recs.append(AudioRecord(id=p.stem, path=p, label=label, group=group))
    return recs


def scan_of(root: Path, recs, rejects=()) -> DatasetScan:
    return DatasetScan(name="toy", root=root, records=list(recs), rejects=list(rejects))


def fresh_features(rec: AudioRecord):
    from features.audio import load_audio

    clip = load_audio(rec.path, PRESET.sample_rate, PRESET.duration_s)
    return compute_features(clip.waveform, PRESET)


def test_round_trip_equals_fresh_features(tmp_path):
    recs = make_dataset(tmp_path / "src", 12)
    s = build_cache(scan_of(tmp_path / "src", recs), PRESET, tmp_path / "out", seed=0, shard_size=5, progress=False)
    assert s.n_used == 12 and s.n_processed == 12 and not s.up_to_date and s.shape == (64, 32)
    assert len(list(s.cache_dir.glob("shard-*.parquet"))) == 3
    t = load_table(s.cache_dir)
    assert t.spectrogram.dtype == torch.float16 and tuple(t.spectrogram.shape) == (12, 64, 32)
    assert list(t.ids) == sorted(r.id for r in recs)
    by_id = {r.id: r for r in recs}
    for k, i in enumerate(t.ids):
        f = fresh_features(by_id[i])
        assert torch.allclose(t.spectrogram[k].float(), f.spectrogram, atol=2.5e-4)  # float16 on [0, 1]
        assert torch.equal(t.mask[k], f.mask)
        assert torch.equal(t.norm_stats[k], f.norm_stats)
        assert t.labels[k] == by_id[i].label and t.groups[k] == by_id[i].group
        assert t.classes[int(t.label_index[k])] == by_id[i].label
    assert t.classes == ["0", "1", "2"]
    assert sorted(set(t.split)) == ["test", "train", "val"]
    assert t.cache_key == s.cache_key and t.preset == PRESET


def test_schema_and_metadata(tmp_path):
    recs = make_dataset(tmp_path / "src", 4)
    s = build_cache(scan_of(tmp_path / "src", recs), PRESET, tmp_path / "out", progress=False)
    assert s.cache_dir == cache_dir_for(tmp_path / "out", "toy", PRESET)
    shard = next(s.cache_dir.glob("shard-*.parquet"))
    schema = pq.read_schema(shard)
    assert schema.field("spectrogram").type == pa.list_(pa.field("v", pa.float16(), nullable=False), 64 * 32)
    assert schema.field("mask").type.list_size == 32
    assert schema.field("norm_stats").type == pa.list_(pa.field("v", pa.float32(), nullable=False), 4)
    assert schema.field("cropped").type == pa.bool_()
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert json.loads(meta["preset"]) == PRESET.to_dict()
    assert meta["dataset"] == "toy" and len(meta["inputs_hash"]) == 16
    versions = json.loads(meta["versions"])
    assert {"torch", "torchaudio", "pyarrow", "numpy", "soundfile"} <= set(versions)
    assert "created" in meta
    manifest = json.loads((s.cache_dir / "manifest.json").read_text())
    assert manifest["cache_key"] == s.cache_key and manifest["n_rows"] == 4


def _state(cache_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir()}


def test_incremental_rebuild(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    recs = make_dataset(src, 10)
    s1 = build_cache(scan_of(src, recs), PRESET, out, progress=False)
    before = _state(s1.cache_dir)
    s2 = build_cache(scan_of(src, recs), PRESET, out, progress=False)
    assert s2.up_to_date and s2.n_processed == 0 and s2.cache_key == s1.cache_key
    assert _state(s1.cache_dir) == before  # nothing rewritten

    more = make_dataset(src, 3, start=10)
    s3 = build_cache(scan_of(src, recs + more), PRESET, out, progress=False)
    assert s3.n_processed == 3 and s3.n_used == 13 and not s3.up_to_date
    assert s3.cache_key != s1.cache_key and s3.cache_dir == s1.cache_dir
    old_shards = {k: v for k, v in before.items() if k.startswith("shard-")}
    now = _state(s1.cache_dir)
    assert all(now[k] == v for k, v in old_shards.items())  # old shards untouched
    assert len([k for k in now if k.startswith("shard-")]) == len(old_shards) + 1

    # a removed file drops out, a modified one is reprocessed
    (src / f"{recs[0].id}.wav").unlink()
    write_wav(recs[1].path, 0.9, freq=1234.0, seed=99)
    kept = recs[1:] + more
    s4 = build_cache(scan_of(src, kept), PRESET, out, progress=False)
    assert s4.n_processed == 1 and s4.n_removed == 2 and s4.n_changed == 1 and s4.n_used == 12
    assert "1 file(s) processed (1 of them changed since the last build), 1 gone from the table" in format_summary(s4)

    # new mtimes on the same bytes (a fresh copy of the dataset) change nothing
    for r in kept:
        os.utime(r.path, ns=(0, 10**18))
    s5 = build_cache(scan_of(src, kept), PRESET, out, progress=False)
    assert s5.up_to_date and s5.n_processed == 0 and s5.cache_key == s4.cache_key

    clean = build_cache(scan_of(src, kept), PRESET, tmp_path / "clean", progress=False)
    a, b = load_table(s4.cache_dir), load_table(clean.cache_dir)
    assert list(a.ids) == list(b.ids) and a.cache_key == b.cache_key
    assert torch.equal(a.spectrogram, b.spectrogram) and torch.equal(a.norm_stats, b.norm_stats)
    assert np.array_equal(a.split, b.split)
    g_a, g_b = load_table(s4.cache_dir, split_scheme="group"), load_table(clean.cache_dir, split_scheme="group")
    assert np.array_equal(g_a.split, g_b.split)


def test_group_scheme_is_group_disjoint(tmp_path):
    recs = make_dataset(tmp_path / "src", 30)
    s = build_cache(scan_of(tmp_path / "src", recs), PRESET, tmp_path / "out", progress=False)
    t = load_table(tmp_path / "out", split_scheme="group")  # an --out dir with one cache resolves to it
    for name in ("train", "val", "test"):
        assert set(t.groups[t.split == name]).isdisjoint(set(t.groups[t.split != name]))
    assert set(t.split) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="split_scheme"):
        load_table(s.cache_dir, split_scheme="speaker")
    assert len(t.select("train")) + len(t.select("val")) + len(t.select("test")) == 30


def test_bad_files_are_rejected_and_build_goes_on(tmp_path):
    src = tmp_path / "src"
    recs = make_dataset(src, 6)
    garbage = src / "garbage.wav"
    garbage.write_bytes(b"RIFF....this is not audio" * 10)
    empty = src / "empty.wav"
    empty.write_bytes(b"")
    long = write_wav(src / "long.wav", 2.5, seed=7)
    bad = [AudioRecord("garbage", garbage, "0", "spkx"), AudioRecord("empty", empty, "0", "spkx"),
           AudioRecord("long", long, "1", "spky")]
    from features.datasets.base import Reject

    scan_rej = [Reject("meta-row-9", str(src / "missing.wav"), "listed in metadata but missing", "rejected")]
    s = build_cache(scan_of(src, recs + bad, scan_rej), PRESET, tmp_path / "out", progress=False)
    assert s.n_used == 7  # 6 good + the cropped long one
    by_id = {r.id: r for r in s.rejects}
    assert by_id["garbage"].action == "rejected" and by_id["garbage"].reason
    assert by_id["empty"].action == "rejected" and by_id["empty"].reason
    assert by_id["long"].action == "cropped"
    assert by_id["meta-row-9"].reason == "listed in metadata but missing"
    assert s.n_rejected == 3 and s.n_cropped == 1
    rej = pq.read_table(s.cache_dir / read_manifest(s.cache_dir).rejects.file).to_pylist()
    assert {r["id"] for r in rej} == {"garbage", "empty", "long", "meta-row-9"}
    csv_text = s.rejects_csv.read_text()
    assert csv_text.splitlines()[0] == "id,path,reason,action" and "garbage" in csv_text
    t = load_table(s.cache_dir)
    assert "long" in set(t.ids) and "garbage" not in set(t.ids)
    # rejected files are remembered: the next build decodes nothing
    s2 = build_cache(scan_of(src, recs + bad, scan_rej), PRESET, tmp_path / "out", progress=False)
    assert s2.up_to_date and s2.n_rejected == 3 and s2.n_cropped == 1


def test_no_usable_file_is_a_clear_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.wav").write_bytes(b"nope")
    with pytest.raises(BuildError, match="no usable audio file"):
        build_cache(scan_of(src, [AudioRecord("a", src / "a.wav", "0", "g")]), PRESET, tmp_path / "out", progress=False)


def test_incomplete_or_tampered_cache_refuses_to_load(tmp_path):
    recs = make_dataset(tmp_path / "src", 5)
    s = build_cache(scan_of(tmp_path / "src", recs), PRESET, tmp_path / "out", progress=False)
    (s.cache_dir / read_manifest(s.cache_dir).splits.file).write_bytes(b"x")
    with pytest.raises(CacheError, match="splits"):
        load_table(s.cache_dir)
    (s.cache_dir / "manifest.json").unlink()
    with pytest.raises(CacheError, match="did not complete"):
        load_table(s.cache_dir)
    with pytest.raises(CacheError, match="not a feature cache"):
        load_table(tmp_path / "src")
    # a rebuild repairs it
    s2 = build_cache(scan_of(tmp_path / "src", recs), PRESET, tmp_path / "out", progress=False)
    assert len(load_table(s2.cache_dir)) == 5


def test_arrow_copy_equals_parquet_shards_and_is_copy_on_write(tmp_path):
    recs = make_dataset(tmp_path / "src", 9)
    s = build_cache(scan_of(tmp_path / "src", recs), PRESET, tmp_path / "out", shard_size=4, progress=False)
    arrows = list(s.cache_dir.glob("table-*.arrow"))
    assert len(arrows) == 1
    a = load_table(s.cache_dir, source="arrow")
    p = load_table(s.cache_dir, source="parquet")
    assert list(a.ids) == list(p.ids)
    for name in ("spectrogram", "mask", "norm_stats", "label_index"):
        assert torch.equal(getattr(a, name), getattr(p, name)), name
    assert np.array_equal(a.split, p.split) and np.array_equal(a.groups, p.groups)
    before = arrows[0].read_bytes()
    a.spectrogram[0].fill_(0.5)  # private copy-on-write pages: the file is never modified
    assert arrows[0].read_bytes() == before
    assert torch.equal(load_table(s.cache_dir).spectrogram, p.spectrogram)
    arrows[0].unlink()
    with pytest.raises(CacheError, match="Arrow copy"):
        load_table(s.cache_dir, source="arrow")
    assert torch.equal(load_table(s.cache_dir).spectrogram, p.spectrogram)  # auto falls back to Parquet
    s2 = build_cache(scan_of(tmp_path / "src", recs), PRESET, tmp_path / "out", progress=False)
    assert not s2.up_to_date and len(list(s.cache_dir.glob("table-*.arrow"))) == 1  # the missing copy is rebuilt


def test_every_broken_kind_lands_in_rejects_with_its_reason(tmp_path):
    from tests import audio_factory

    src = tmp_path / "src"
    good = make_dataset(src, 4)
    expected = {}
    bad = []
    for kind, (writer, reason) in audio_factory.broken_writers().items():
        p = writer(src / "broken" / f"{kind}.wav")
        bad.append(AudioRecord(f"broken-{kind}", p, "0", "spkb"))
        expected[f"broken-{kind}"] = reason
    long = audio_factory.write_too_long_wav(src / "long.wav", duration_s=3.0)
    bad.append(AudioRecord("long", long, "1", "spkc"))
    s = build_cache(scan_of(src, good + bad), PRESET, tmp_path / "out", progress=False)
    got = {r.id: r for r in s.rejects}
    for i, reason in expected.items():
        assert got[i].reason == reason and got[i].action == "rejected", (i, got.get(i))
    assert got["long"].action == "cropped"
    assert s.n_used == 5 and s.n_rejected == len(expected)
    assert s.rejects_by_reason == {r: 1 for r in expected.values()}


@pytest.mark.slow
def test_parallel_workers_give_the_same_table(tmp_path):
    recs = make_dataset(tmp_path / "src", 24)
    one = build_cache(scan_of(tmp_path / "src", recs), PRESET, tmp_path / "w1", workers=1, progress=False)
    two = build_cache(scan_of(tmp_path / "src", recs), PRESET, tmp_path / "w2", workers=2, progress=False)
    a, b = load_table(one.cache_dir), load_table(two.cache_dir)
    assert list(a.ids) == list(b.ids) and a.cache_key == b.cache_key
    assert torch.equal(a.spectrogram, b.spectrogram) and torch.equal(a.norm_stats, b.norm_stats)


def test_concurrent_builds_of_one_cache_are_serialised(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    recs = make_dataset(tmp_path / "src", 8)
    with ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(build_cache, scan_of(tmp_path / "src", recs), PRESET, tmp_path / "out", shard_size=3,
                            progress=False) for _ in range(2)]
        results = [f.result() for f in futs]
    assert sorted(r.up_to_date for r in results) == [False, True]
    assert sum(r.n_processed for r in results) == 8
    t = load_table(tmp_path / "out")
    assert len(t) == 8
    manifest = json.loads((results[0].cache_dir / "manifest.json").read_text())
    assert {p.name for p in results[0].cache_dir.glob("shard-*.parquet")} == {sh["file"] for sh in manifest["shards"]}
