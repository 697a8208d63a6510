"""CLI: train one model on a feature cache (a thin shell over :func:`trainables.loop.train`).

    python -m trainables.train --model cat_uvac --features DIR --epochs N --out RUN_DIR
    python -m trainables.train --model uvac --features DIR --lam 2 --divergence is --out RUN_DIR
    python -m trainables.train --model kmeans --features DIR --out RUN_DIR
    python -m trainables.train --out RUN_DIR --resume            # continue RUN_DIR/checkpoint

Every config key (:func:`trainables.config.all_keys`, docs/CONFIG.md) is a flag (``tau_kind`` -> ``--tau-kind``);
``--config file.json`` gives a partial config (flags win over the file). Progress goes to stderr
(one line per epoch); the final metrics go to stdout as ONE JSON line, the last line.

RUN_DIR gets::

    config.json          the resolved config + "features" (cache path), "cache_key", "preset"
    checkpoint/          the last checkpoint (state.pt + config.json)
    history.jsonl        one JSON object of metrics per epoch
    metrics.json         {"status", "epochs_done", "reason", "metrics": {...}}
    assignments.parquet  id, split, label, cluster, probabilities (list<float>) per clip

Exit status: 0 complete or stopped, 3 diverged (the artifacts are still written), 2 bad
arguments or config, 1 any other error.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from trainables.config import DEFAULTS, ConfigError, all_keys, check_frontend, load_config_file, resolve_config
from trainables.config_keys import add_flags, flag_values
from trainables.status import TrialStatus

# Keys of RUN_DIR/config.json that are not training config.
META_KEYS = ("features", "cache_key", "preset", "preset_name")
EXIT_DIVERGED = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainables.train",
        description="Train UVAC / categorical UVAC (or fit a K-means / GMM baseline) on a feature cache.",
    )
    p.add_argument("--features", help="feature cache directory (python -m features.build --out ...)")
    p.add_argument("--out", required=True, help="run directory (created)")
    p.add_argument("--config", help="JSON file with a partial config (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint with RUN_DIR/config.json")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    g = p.add_argument_group("config keys (docs/CONFIG.md; defaults: the recipe's, --recipe "
                             "paper | paper-lr5e-3 | recommended)")
    add_flags(g, all_keys().values())
    return p


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        return _jsonable(v.item())
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_assignments(assignments: dict[str, Any], path: Path) -> None:
    """Per-clip assignments -> Parquet (probabilities as a list<float32> column), atomically
    (:func:`features.store.atomic_write`, the project's one atomic writer)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.store import atomic_write

    cols = {
        "id": pa.array([str(x) for x in assignments["id"]], pa.string()),
        "split": pa.array([str(x) for x in assignments["split"]], pa.string()),
        "label": pa.array([str(x) for x in assignments["label"]], pa.string()),
        "cluster": pa.array(np.asarray(assignments["cluster"], dtype=np.int64), pa.int64()),
        "probabilities": pa.array([list(map(float, r)) for r in assignments["probabilities"]],
                                  pa.list_(pa.float32())),
    }
    table = pa.table(cols)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))


def _progress_line(epoch: int, epochs: int, m: dict[str, Any]) -> str:
    parts = [f"epoch {epoch}/{epochs}"]
    for key in ("train/loss", "train/recon", "train/kl_z", "train/kl_y", "train/kl_ybar", "train/tau", "train/lr",
                "val/acc", "val/nmi", "val/silhouette_z", "val/silhouette_y"):
        if key in m and isinstance(m[key], (int, float)):
            parts.append(f"{key} {m[key]:.4g}")
    if "train/epoch_time_s" in m:
        parts.append(f"{m['train/epoch_time_s']:.1f}s")
    return "  ".join(parts)


def check_device(name: str, fix: str = "use --device cpu") -> None:
    """A requested device that this machine does not have is a config error (before any file is
    written); ``fix`` is what the message tells to do instead (a study's: ``use --set device=cpu``)."""
    if str(name).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine; {fix}")


def check_writable(out: Path) -> None:
    """``--out`` must be a directory this process can create files in (checked before any data
    is loaded or any file written): the nearest existing folder on its path is asked."""
    p = out
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"--out {out}: {p} is a file, not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        why = "on a read-only file system" if _read_only(p) else "not writable by this user"
        raise ConfigError(f"--out {out}: cannot write there ({p} is {why}); choose another --out")


def _read_only(p: Path) -> bool:
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    flags = flag_values(args, all_keys().values())

    try:
        partial: dict[str, Any] = {}
        features = args.features
        if args.resume:
            cfg_path = out / "config.json"
            if not cfg_path.exists() or not (out / "checkpoint").exists():
                raise ConfigError(f"--resume: {out} has no config.json and checkpoint/ to resume from")
            partial.update(load_config_file(cfg_path))
        if args.config:
            partial.update(load_config_file(args.config))
        features = features or partial.get("features")
        for k in META_KEYS:
            partial.pop(k, None)
        partial.update(flags)
        if not features:
            raise ConfigError("--features DIR is required (a feature cache built by python -m features.build)")
        early = resolve_config(partial)  # fail fast on bad keys/values, before loading any data
        voices, val_fold = early["voices"], early["val_fold"]
        check_device(partial.get("device", DEFAULTS["device"]))
        check_writable(out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from features.cache import load_table

    from trainables.baselines import check_n_clusters

    try:
        table = load_table(features, split_scheme=partial.get("split_scheme", DEFAULTS["split_scheme"]), voices=voices,
                           val_fold=val_fold)
    except Exception as e:
        print(f"error: cannot load features from {features}: {e}", file=sys.stderr)
        return 2

    try:
        resolved = resolve_config(partial, dataset=table.dataset, preset=table.preset)
        check_frontend(resolved, table.preset)  # before any file is written or epoch trained
        check_n_clusters(table, resolved["n_clusters"])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _train_and_write(args, out, partial, table, resolved, features)
    except OSError as e:  # a full or failing disk: one line, what is kept, nothing half-written
        _tidy(out)
        print(f"error: {_disk_error(e, out)}", file=sys.stderr)
        return 1


def _write_text(path: Path, text: str) -> None:
    """A whole file or the previous one (features.store.atomic_write), never a truncated one."""
    from features.store import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(text))


def _train_and_write(args, out: Path, partial: dict, table, resolved: dict, features) -> int:
    from trainables.loop import train

    out.mkdir(parents=True, exist_ok=True)
    meta = {"features": str(Path(features).resolve()), "cache_key": table.cache_key,
            "preset": table.preset.to_dict()}
    if getattr(table, "voice_model", None) is not None:  # what predict normalises a new clip with
        meta["voice_model"] = table.voice_model.to_dict()
    _write_text(out / "config.json", json.dumps({**resolved, **meta}, indent=2, sort_keys=True))

    history_path = out / "history.jsonl"
    if not args.resume and history_path.exists():
        history_path.unlink()
    epochs = int(resolved["epochs"])

    def on_epoch(epoch: int, metrics: dict, checkpoint_fn) -> None:
        with history_path.open("a") as f:
            f.write(json.dumps(_jsonable(metrics), sort_keys=True) + "\n")
        if not args.quiet:
            print(_progress_line(epoch, epochs, metrics), file=sys.stderr, flush=True)

    ckpt = out / "checkpoint"
    try:
        result = train(partial, table, on_epoch=on_epoch, checkpoint_dir=str(ckpt),
                       resume_from=str(ckpt) if args.resume else None)
    except (ValueError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    # The loop's history is authoritative (it includes the epochs before a resume).
    _write_text(history_path, "".join(json.dumps(_jsonable(h), sort_keys=True) + "\n" for h in result.history))
    _write_text(out / "config.json", json.dumps({**result.config, **meta}, indent=2, sort_keys=True))
    if result.assignments is not None:
        write_assignments(result.assignments, out / "assignments.parquet")
    summary = {"status": result.status, "epochs_done": result.epochs_done, "reason": result.reason,
               "metrics": _jsonable(result.metrics)}
    _write_text(out / "metrics.json", json.dumps(summary, indent=2, sort_keys=True))  # last: the run is whole
    if result.status == TrialStatus.DIVERGED:
        print(f"diverged: {result.reason}", file=sys.stderr)
    line = {"status": result.status, "epochs_done": result.epochs_done, "reason": result.reason,
            **_jsonable(result.metrics)}
    print(json.dumps(line, sort_keys=True), flush=True)
    return EXIT_DIVERGED if result.status == TrialStatus.DIVERGED else 0


def _tidy(out: Path) -> None:
    """After a disk error: no half line in history.jsonl, no empty checkpoint/ folder."""
    history = out / "history.jsonl"
    try:
        data = history.read_bytes()
        if data and not data.endswith(b"\n"):
            with history.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
        ckpt = out / "checkpoint"
        if ckpt.is_dir() and not any(ckpt.iterdir()):
            ckpt.rmdir()
    except OSError:
        pass


def _disk_error(e: OSError, out: Path) -> str:
    """One line: what failed where, and what of the run is kept."""
    from trainables.checkpoint import load_checkpoint

    where = "no space left on" if e.errno == errno.ENOSPC else f"cannot write ({e.strerror or e}):"
    try:
        kept = (f"the last good checkpoint (epoch {load_checkpoint(out / 'checkpoint')['epoch']}) is kept in "
                f"{out / 'checkpoint'}; free space, then continue with --resume")
    except (OSError, ValueError):
        kept = "no checkpoint was written; free space and run it again"
    return f"{where} {out} (writing {e.filename or out}): {kept}"


if __name__ == "__main__":
    from features.cli import run_main

    sys.exit(run_main(main))
