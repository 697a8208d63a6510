"""CLI: build (or update) a feature cache.

    python -m features.build --dataset fsdd --root ../shared/data/fsdd --preset audiomnist --out DIR
    python -m features.build --dataset synthetic --out DIR          # materialised under DIR/sources/

The logic lives in :func:`features.builder.build_cache`; this is a thin shell that scans the
dataset, prints a summary (with a ``repaired:`` line per file found corrupt or missing and
rebuilt, or why the cache was rebuilt from scratch), and turns expected failures (wrong root, no
usable file) into a one-line message and a non-zero exit status. ``--force`` rebuilds
everything; ``--no-verify`` skips the sha256 check of the existing files (huge caches).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from features.cache import BuildError, BuildSummary, CacheError, build_cache
from features.datasets import DATASETS, DEFAULT_PRESET, scan_dataset
from features.datasets.base import DatasetError
from features.frontend import PRESETS, get_preset

EXIT_USAGE = 2


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


def default_preset_for(dataset: str) -> str:
    """The dataset adapter's default preset (``features.datasets.DEFAULT_PRESET``)."""
    return DEFAULT_PRESET[dataset]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m features.build", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="dataset adapter")
    p.add_argument("--root", type=Path, default=None, help="dataset root (not needed for synthetic)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS), help="front end (default: the dataset's)")
    p.add_argument("--out", type=Path, required=True, help="output directory (the cache goes in a subfolder)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic generator")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test splits")
    p.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    p.add_argument("--duration", type=float, default=None, help="override the preset's time context, seconds")
    p.add_argument("--limit", type=int, default=None, help="use only N files, evenly spaced over the sorted ids")
    p.add_argument("--shard-size", type=int, default=4096, help="rows per Parquet shard")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="ignore the existing cache: decode and write everything again")
    p.add_argument("--no-verify", action="store_true",
                   help="do not check the sha256 of the existing cache files (only that they exist)")
    return p


def scan(dataset: str, root: Path | None, out: Path, seed: int):
    """List the dataset (materialising the synthetic one under ``out/sources`` when no root is given)."""
    if dataset == "synthetic":
        if root is None:
            root = out / "sources" / f"synthetic-seed{seed}"
        from features.datasets.synthetic import ensure_synthetic

        ensure_synthetic(root, seed)
        return scan_dataset(dataset, root, seed=seed)
    if root is None:
        raise BuildError(f"--root is required for dataset {dataset!r}")
    if not root.is_dir():
        raise BuildError(f"dataset root {root} does not exist or is not a directory")
    return scan_dataset(dataset, root)


def format_summary(s: BuildSummary, n_listed_rejects: int = 5) -> str:
    lines = [f"repaired: {r}" for r in s.repairs]
    if s.up_to_date:
        lines.append(f"up to date: {s.cache_dir} (cache key {s.cache_key}); nothing to do")
    else:
        gone, changed = s.n_removed - s.n_changed, s.n_changed
        lines.append(f"built {s.cache_dir} (cache key {s.cache_key}): {s.n_processed} file(s) processed "
                     f"({changed} of them changed since the last build), {gone} gone from the table")
    lines.append(f"files used:     {s.n_used} of {s.n_scanned} listed")
    lines.append(f"files rejected: {s.n_rejected}")
    for reason, k in Counter(r.reason for r in s.rejects if r.action == "rejected").most_common():
        lines.append(f"    {k:6d}  {reason}")
    for r in [r for r in s.rejects if r.action == "rejected"][:n_listed_rejects]:
        lines.append(f"    e.g. {r.path}: {r.reason}")
    lines.append(f"files cropped:  {s.n_cropped}")
    lines.append(f"table:          {s.cache_dir}  (rejects: {s.rejects_csv})")
    lines.append(f"classes:        {s.n_classes}")
    f, t = s.shape
    lines.append(f"spectrogram:    {f} x {t} (F x T), float16, preset {s.preset.name}")
    lines.append(f"size on disk:   {_human_bytes(s.size_bytes)}")
    lines.append(f"time:           {s.elapsed_s:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        preset = get_preset(args.preset or default_preset_for(args.dataset), duration_s=args.duration)
        if args.workers < 1:
            raise BuildError("--workers must be >= 1")
        ds = scan(args.dataset, args.root, args.out, args.seed)
        summary = build_cache(
            ds,
            preset,
            args.out,
            args.split_seed,
            workers=args.workers,
            shard_size=args.shard_size,
            limit=args.limit,
            progress=not args.no_progress,
            force=args.force,
            verify=not args.no_verify,
        )
    except (BuildError, CacheError, DatasetError, ValueError, OSError) as exc:
        print(f"features.build: error: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_USAGE
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    from features.cli import run_main

    sys.exit(run_main(main))
