"""Checkpoints: everything needed to resume a run bit-for-bit (on CPU).

A checkpoint is a directory holding ``state.pt`` (read with ``torch.load(weights_only=True)``,
so it holds only tensors and primitive containers) and ``config.json`` (the resolved config,
for humans and for ``trainables.predict``). The state dict::

    {"format": 1,
     "model": model.state_dict(), "optimizer": optimizer.state_dict(),
     "epoch": last completed epoch (1-based), "global_step": optimizer steps so far,
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor, ...], "numpy": {...}, "numpy_global": {...},
             "shuffle": ByteTensor},
     "config": resolved config (flat dict of primitives),
     "history": [per-epoch metric dicts], "n_clusters": int, "meta": {...}}

Writes are atomic: the file goes to a temporary name in the same directory and is moved
into place with ``os.replace``, so a crash never leaves a half-written checkpoint.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
FORMAT = 1

__all__ = [
    "STATE_FILE",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_file",
    "numpy_generator_state",
    "set_numpy_generator_state",
    "numpy_global_state",
    "set_numpy_global_state",
    "clone_tree",
    "to_cpu_tree",
    "global_rng_state",
    "set_global_rng_state",
    "rng_state",
    "set_rng_state",
]


def _atomic_write_bytes(path: Path, write) -> None:
    """``write(f)`` into memory, then the bytes to a temporary file moved over ``path``. A disk
    error (full, read-only) is an ``OSError`` naming ``path`` (torch's own writer would say
    "enforce fail at inline_container.cc"); the temporary file is removed and ``path`` keeps
    its previous content."""
    buf = io.BytesIO()
    write(buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def checkpoint_file(path: str | Path) -> Path:
    """The state file of a checkpoint given as a directory or as the file itself."""
    p = Path(path)
    if p.is_dir():
        return p / STATE_FILE
    return p


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically. ``path`` is a checkpoint directory (created if needed) or a
    ``.pt`` file. A directory also gets ``config.json`` from ``state["config"]``. Returns the
    state file written."""
    p = Path(path)
    if p.suffix == ".pt":
        target = p
    else:
        p.mkdir(parents=True, exist_ok=True)
        target = p / STATE_FILE
    state = {"format": FORMAT, **state}
    _atomic_write_bytes(target, lambda f: torch.save(state, f))
    if target.parent == p and "config" in state:
        text = json.dumps(state["config"], indent=2, sort_keys=True, default=str).encode()
        _atomic_write_bytes(p / CONFIG_FILE, lambda f: f.write(text))
    return target


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    f = checkpoint_file(path)
    if not f.exists():
        raise FileNotFoundError(f"no checkpoint at {path} (expected {f})")
    try:
        state = torch.load(f, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise ValueError(f"checkpoint {f} cannot be read: {e}") from e
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {f} is not a trainables checkpoint (no model state)")
    if state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {f}: unsupported format {state.get('format')!r} (expected {FORMAT})")
    return state


# numpy RNG states as primitives (weights_only cannot unpickle numpy objects) ----------------

def numpy_generator_state(gen: np.random.Generator) -> dict[str, Any]:
    """A ``np.random.Generator``'s state with its big integers as strings."""
    st = gen.bit_generator.state
    return json.loads(json.dumps(st, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)),
                      parse_int=str)


def set_numpy_generator_state(gen: np.random.Generator, state: dict[str, Any]) -> None:
    def back(o):
        if isinstance(o, dict):
            return {k: back(v) for k, v in o.items()}
        if isinstance(o, list):
            return [back(v) for v in o]
        if isinstance(o, str) and o.lstrip("-").isdigit():
            return int(o)
        return o

    gen.bit_generator.state = back(state)


def numpy_global_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def set_numpy_global_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


# -- state capture / restore (the loop's snapshots) --------------------------------------------
def map_tree(obj, fn):
    """``fn`` applied to every tensor of nested dicts / lists / tuples."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tree(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tree(v, fn) for v in obj)
    return obj


def clone_tree(obj):
    return map_tree(obj, lambda t: t.detach().clone())


def to_cpu_tree(obj):
    return map_tree(obj, lambda t: t.detach().cpu())


def global_rng_state() -> dict[str, Any]:
    """The process-wide generators' state: torch's, CUDA's (one per device; none without CUDA) and
    numpy's legacy global generator."""
    return {"torch": torch.get_rng_state(),
            "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
            "numpy_global": numpy_global_state()}


def set_global_rng_state(st: Mapping[str, Any]) -> None:
    """Restore :func:`global_rng_state` (CUDA's only on a machine with as many devices)."""
    torch.set_rng_state(st["torch"].cpu())
    if st.get("cuda") and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in st["cuda"]])
    set_numpy_global_state(st["numpy_global"])


def rng_state(shuffle_gen: torch.Generator, np_gen: np.random.Generator) -> dict[str, Any]:
    """Every generator a run draws from: the process-wide ones, the run's numpy generator and its
    shuffling generator."""
    return {**global_rng_state(), "numpy": numpy_generator_state(np_gen), "shuffle": shuffle_gen.get_state()}


def set_rng_state(st: Mapping[str, Any], shuffle_gen: torch.Generator, np_gen: np.random.Generator) -> None:
    set_global_rng_state(st)
    set_numpy_generator_state(np_gen, st["numpy"])
    shuffle_gen.set_state(st["shuffle"].cpu())
