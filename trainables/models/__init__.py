"""Networks behind one interface (:class:`ClusteringModel`) and their registry.

``MODELS`` maps a config's ``model`` name to its class; :func:`build_model` builds the network
of a resolved config. Adding a model = subclass :class:`ClusteringModel`, register it here.
"""
from __future__ import annotations

from typing import Any, Mapping

from trainables.models.base import Batch, ClusteringModel
from trainables.models.blocks import ConvDecoder, ConvEncoder
from trainables.models.cat_uvac import CatUVAC
from trainables.models.uvac import UVAC

__all__ = ["MODELS", "build_model", "warmup_epochs", "Batch", "ClusteringModel", "ConvEncoder", "ConvDecoder", "UVAC", "CatUVAC"]

MODELS: dict[str, type[ClusteringModel]] = {cls.name: cls for cls in (UVAC, CatUVAC)}


def warmup_epochs(cfg: Mapping[str, Any]) -> int:
    """Epochs a resolved config's model needs before it may be judged (0 for a baseline)."""
    cls = MODELS.get(cfg["model"])
    return 0 if cls is None else int(cls.warmup_epochs(cfg))


def build_model(cfg: Mapping[str, Any], n_freq: int, n_frames: int, preset: Any = None) -> ClusteringModel:
    """The network of a resolved config (``n_clusters`` resolved, i.e. >= 2).

    ``preset`` (a :class:`features.frontend.Preset`) de-normalises targets for the ``is`` and
    ``kl`` divergences and says whether the inputs are in [0, 1] (``bounded``) or real-valued;
    None means a [0, 1] input without de-normalisation.
    """
    if cfg["model"] not in MODELS:
        raise ValueError(f"model {cfg['model']!r} is not a neural model; registered: {', '.join(MODELS)}")
    to_linear = None
    if preset is not None and preset.invertible:
        from features.frontend import denormalise

        def to_linear(x01, stats):
            return denormalise(x01, stats, preset)

    bounded = True if preset is None else bool(preset.bounded)
    return MODELS[cfg["model"]].from_config(cfg, int(n_freq), int(n_frames), to_linear, bounded=bounded)
