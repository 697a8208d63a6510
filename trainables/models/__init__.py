"""Networks behind one interface (:class:`ClusteringModel`) and their registry.

``MODELS`` maps a config's ``model`` name to its class; :func:`build_model` builds the network
of a resolved config. Adding a model = one file: subclass :class:`ClusteringModel` (it declares
what it owns: its config keys and defaults, loss terms, logged names, representations) and
register it with :func:`register_model` (usable as a class decorator). Nothing else names it.

Processes started afterwards see the registration too: :func:`register_model` adds
``module:Class`` to the environment variable :data:`PLUGINS_ENV`, and every lookup here
(:func:`model_class`, :func:`registered_models`, hence ``trainables.config``) first imports what
that variable lists. So a Ray worker of a study (a local Ray started after the registration
inherits the environment), a replication's tasks and a ``python -m trainables.train`` subprocess
find the class. For a CLI run or a Ray cluster started elsewhere, set the variable yourself
(``TRAINABLES_MODELS=my_models:MyModel``; a bare module path is imported, for a module that
registers its classes itself).
"""
from __future__ import annotations

import functools

import importlib
import os
from typing import Any, Callable, Iterator, Mapping

from trainables.baselines import BASELINES
from trainables.models.base import Batch, ClusteringModel
from trainables.models.blocks import ConvDecoder, ConvEncoder
from trainables.models.cat_uvac import CatUVAC
from trainables.models.uvac import UVAC

__all__ = ["MODELS", "PLUGINS_ENV", "RegistryView", "build_model", "warmup_epochs", "register_model",
           "unregister_model", "model_class", "registered_models", "load_plugins", "Batch", "ClusteringModel",
           "ConvEncoder", "ConvDecoder", "UVAC", "CatUVAC"]

MODELS: dict[str, type[ClusteringModel]] = {cls.name: cls for cls in (UVAC, CatUVAC)}
PLUGINS_ENV = "TRAINABLES_MODELS"
_loaded: set[str] = set()  # entries of PLUGINS_ENV imported by this process


def _entry(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _entries() -> list[str]:
    return [e.strip() for e in os.environ.get(PLUGINS_ENV, "").split(",") if e.strip()]


def register_model(cls: type[ClusteringModel]) -> type[ClusteringModel]:
    """Register ``cls`` under ``cls.name`` (again: no-op); returns it, so it decorates a class.

    A ValueError when the name is taken by another class or by a baseline. Classes defined outside
    ``trainables.models`` are listed in :data:`PLUGINS_ENV` for the processes started from here on."""
    if not (isinstance(cls, type) and issubclass(cls, ClusteringModel)):
        raise TypeError(f"register_model: {cls!r} is not a ClusteringModel subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_model: {cls.__qualname__} has no name (class attribute `name`)")
    if name in BASELINES:
        raise ValueError(f"register_model: {name!r} is a baseline (trainables.baselines.BASELINES)")
    taken = MODELS.get(name)
    if taken is not None and _entry(taken) != _entry(cls):
        raise ValueError(f"register_model: {name!r} is already {_entry(taken)}")
    MODELS[name] = cls
    if not cls.__module__.startswith("trainables.models") and cls.__module__ != "__main__":
        entry = _entry(cls)
        entries = _entries()
        if entry not in entries:
            os.environ[PLUGINS_ENV] = ",".join([*entries, entry])
        _loaded.add(entry)
    return cls


def unregister_model(name: str) -> None:
    """Undo :func:`register_model` (tests; a built-in model stays)."""
    cls = MODELS.get(name)
    if cls is None or cls in (UVAC, CatUVAC):
        return
    del MODELS[name]
    entry = _entry(cls)
    _loaded.discard(entry)
    left = [e for e in _entries() if e != entry]
    if left:
        os.environ[PLUGINS_ENV] = ",".join(left)
    else:
        os.environ.pop(PLUGINS_ENV, None)


def load_plugins() -> None:
    """Import (and register) what :data:`PLUGINS_ENV` lists and this process has not yet."""
    for entry in _entries():
        if entry in _loaded:
            continue
        module, _, attr = entry.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"{PLUGINS_ENV}: cannot load {entry!r}: {exc}") from None
        _loaded.add(entry)
        if attr:
            register_model(obj)


def registered_models() -> dict[str, type[ClusteringModel]]:
    """name -> class of every registered network (:data:`PLUGINS_ENV` loaded first)."""
    load_plugins()
    return dict(MODELS)


def model_class(name: str) -> type[ClusteringModel] | None:
    """The class registered as ``name``, or None (a baseline, an unknown name)."""
    return registered_models().get(name)


class RegistryView(Mapping):
    """A read-only mapping computed by ``build()`` at each access, so that a table derived from the
    registry (trainables.config.DEFAULTS, trainables.metric_names.REPRESENTATIONS, ...) shows a
    model registered later."""

    def __init__(self, build: Callable[[], Mapping]):
        self._build = build

    def __getitem__(self, key: Any) -> Any:
        return self._build()[key]

    def __iter__(self) -> Iterator:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return repr(dict(self._build()))


def warmup_epochs(cfg: Mapping[str, Any]) -> int:
    """Epochs a resolved config's model needs before it may be judged (0 for a baseline)."""
    cls = model_class(cfg["model"])
    return 0 if cls is None else int(cls.warmup_epochs(cfg))


def build_model(cfg: Mapping[str, Any], n_freq: int, n_frames: int, *, preset: Any) -> ClusteringModel:
    """The network of a resolved config (``n_clusters`` resolved, i.e. >= 2).

    ``preset`` (a :class:`features.frontend.Preset`, the table's) de-normalises targets for the
    ``is`` and ``kl`` divergences and says whether the inputs are in [0, 1] (``bounded``) or
    real-valued; None means a [0, 1] input without de-normalisation. It has no default: a caller
    that forgot it rebuilt every real-valued front end's network as a bounded one (a checkpoint
    then refused to load, or loaded and ignored its learned input statistics).
    """
    cls = model_class(cfg["model"])
    if cls is None:
        raise ValueError(f"model {cfg['model']!r} is not a neural model; registered: {', '.join(MODELS)}")
    to_linear = None
    if preset is not None and preset.invertible:
        from features.frontend import denormalise

        to_linear = functools.partial(denormalise, preset=preset)  # (x01, norm_stats) -> linear spectrogram

    bounded = True if preset is None else bool(preset.bounded)
    return cls.from_config(cfg, int(n_freq), int(n_frames), to_linear, bounded=bounded)
