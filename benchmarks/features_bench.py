"""Feature pipeline benchmark: build throughput, cache load bandwidth, cache vs re-decoding.

    .venv/bin/python -m benchmarks.features_bench [--root ../shared/data/fsdd] [--limit N]
        [--preset audiomnist] [--workers 1] [--repeats 3]

All figures come from this one run on this machine:
  * build: files/s of a clean ``build_cache`` (decode + resample + STFT + Parquet write);
  * load:  GB/s of ``load_table`` (spectrogram bytes delivered as a torch tensor / seconds),
           best of ``--repeats`` (warm page cache);
  * verify: load time with and without the sha256 check of the files read (``verify=False``),
           and their ratio, for the Arrow copy and the Parquet shards;
  * ratio: time to decode + featurise the same WAV files again / time to load the cache;
  * storage: the same rows written with a float32 spectrogram and as an uncompressed Arrow
           IPC (Feather) file, to justify float16 Parquet (size and load time).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import torch

from features.cache import build_cache, fixed_list_tensor, load_table
from features.frontend import compute_features, get_preset

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd"


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--dataset", default="fsdd")
    ap.add_argument("--preset", default="audiomnist")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke-test", action="store_true", help="50 files, one repeat: checks the benchmark runs")
    return ap


def _bench_load(s, n: int, repeats: int):
    """Whole-table loads: Arrow mmap vs Parquet, with and without checksum verification."""
    load_s, table = _best(lambda: load_table(s.cache_dir), repeats)
    nbytes = table.spectrogram.numel() * table.spectrogram.element_size()
    print(f"load:    load_table (Arrow IPC mmap): {n} rows, {nbytes / 1e6:.1f} MB float16 in {load_s * 1e3:.1f} ms "
          f"= {nbytes / load_s / 1e9:.2f} GB/s (best of {repeats}, whole FeatureTable incl. splits, verify=True)")
    pload_s, _ = _best(lambda: load_table(s.cache_dir, source="parquet"), repeats)
    print(f"load:    load_table (Parquet shards):  {pload_s * 1e3:.1f} ms = {nbytes / pload_s / 1e9:.2f} GB/s")
    print(f"verify:  {'source':8s} {'verify=True':>12s} {'verify=False':>13s} {'ratio':>7s}   "
          "(sha256 of every file read)")
    for source, with_s in (("arrow", load_s), ("parquet", pload_s)):
        without_s, _ = _best(lambda: load_table(s.cache_dir, source=source, verify=False), repeats)
        print(f"verify:  {source:8s} {with_s * 1e3:9.1f} ms {without_s * 1e3:10.1f} ms {with_s / without_s:6.1f}x")
    return table, load_s, pload_s


def _bench_decode(scan, table, preset, load_s: float, pload_s: float):
    """Decoding and featurising the same files again, against loading the cache."""
    keep = set(table.ids.tolist())
    recs = [r for r in sorted(scan.records, key=lambda r: r.id) if r.id in keep]

    def redo():
        from features.audio import load_audio

        out = [compute_features(load_audio(r.path, preset.sample_rate, preset.duration_s).waveform, preset)
               for r in recs]
        return torch.stack([o.spectrogram for o in out])

    redo_s, fresh = _best(redo, 1)
    print(f"decode:  {len(recs)} files decoded + featurised again in {redo_s:.2f} s = {len(recs) / redo_s:.1f} files/s")
    print(f"ratio:   decode+featurise / load cache = {redo_s / load_s:.0f}x (Arrow), {redo_s / pload_s:.0f}x (Parquet)")
    err = (table.spectrogram.float() - fresh).abs().max().item()
    print(f"float16 storage error vs fresh float32 features: max |x16 - x32| = {err:.2e} "
          f"(bound 2**-12 = {2**-12:.2e} on [0, 1])")


def _bench_storage(s, preset, n: int, tmp: str, repeats: int) -> None:
    """Storage alternatives on the same rows: Parquet float16/float32, zstd, Arrow IPC."""
    tabs = [pq.read_table(p) for p in sorted(s.cache_dir.glob("shard-*.parquet"))]
    full = pa.concat_tables(tabs).combine_chunks()
    f, tt = preset.shape
    spec32 = pa.FixedSizeListArray.from_arrays(
        pa.array(full["spectrogram"].chunk(0).flatten().to_numpy().astype(np.float32)), f * tt
    )
    full32 = full.set_column(full.schema.get_field_index("spectrogram"), "spectrogram", spec32)
    p16, p32, ipc = Path(tmp) / "f16.parquet", Path(tmp) / "f32.parquet", Path(tmp) / "f16.arrow"
    pq.write_table(full, p16, compression="none", use_dictionary=False)
    pq.write_table(full32, p32, compression="none", use_dictionary=False)
    pz = Path(tmp) / "f16-zstd.parquet"
    pq.write_table(full, pz, compression="zstd", use_dictionary=False)
    feather.write_feather(full, ipc, compression="uncompressed")

    def load_parquet(p, shape=(n, f, tt)):
        tab = pq.read_table(p, memory_map=True, columns=["spectrogram"])
        return fixed_list_tensor(tab["spectrogram"], shape)

    def load_ipc():
        tab = feather.read_table(ipc, memory_map=True, columns=["spectrogram"])
        return fixed_list_tensor(tab["spectrogram"], (n, f, tt))

    for name, path, fn in (
        ("parquet float16 uncompressed", p16, lambda: load_parquet(p16)),
        ("parquet float16 zstd (shards)", pz, lambda: load_parquet(pz)),
        ("parquet float32", p32, lambda: load_parquet(p32)),
        ("arrow IPC float16 mmap (table)", ipc, load_ipc),
    ):
        sec, x = _best(fn, repeats)
        b = x.numel() * x.element_size()
        print(f"storage: {name:32s} {path.stat().st_size / 1e6:8.1f} MB on disk, load {sec * 1e3:7.1f} ms "
              f"= {b / sec / 1e9:6.2f} GB/s of {x.dtype}")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.smoke_test:
        args.limit, args.repeats = 50, 1
    from features.datasets import scan_dataset

    torch.set_num_threads(1)
    scan = scan_dataset(args.dataset, args.root)
    preset = get_preset(args.preset)
    with tempfile.TemporaryDirectory(prefix="features-bench-") as tmp:
        t = time.perf_counter()
        s = build_cache(scan, preset, tmp, 0, workers=args.workers, limit=args.limit, progress=False)
        build_s = time.perf_counter() - t
        print(f"dataset {args.dataset} ({args.root}), preset {preset.name} {preset.shape}, {s.n_scanned} files, "
              f"workers={args.workers}")
        print(f"build:   {s.n_scanned} files in {build_s:.2f} s = {s.n_scanned / build_s:.1f} files/s "
              f"({s.n_used} rows, {s.n_rejected} rejected, {s.size_bytes / 1e6:.1f} MB on disk)")
        table, load_s, pload_s = _bench_load(s, s.n_used, args.repeats)
        _bench_decode(scan, table, preset, load_s, pload_s)
        _bench_storage(s, preset, s.n_used, tmp, args.repeats)


if __name__ == "__main__":
    main()
