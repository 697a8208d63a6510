"""Features: dataset adapters -> decoded audio -> spectrograms -> Parquet cache -> FeatureTable.

Public names are re-exported lazily (``from features import load_table``), so that importing a
submodule such as ``features.datasets`` does not pull in torch and pyarrow.
"""
from importlib import import_module

_EXPORTS = {
    "BuildError": "features.cache",
    "BuildSummary": "features.cache",
    "CacheError": "features.cache",
    "build_cache": "features.cache",
    "load_table": "features.cache",
    "read_cache_info": "features.cache",
    "CacheInfo": "features.cache",
    "PRESETS": "features.frontend",
    "ClipFeatures": "features.frontend",
    "Preset": "features.frontend",
    "compute_features": "features.frontend",
    "denormalise": "features.frontend",
    "get_preset": "features.frontend",
    "group_split": "features.splits",
    "random_split": "features.splits",
    "FeatureTable": "features.table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'features' has no attribute {name!r}")
