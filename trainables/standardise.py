"""Per-dimension standardisation fitted on the train rows (:class:`Standardiser`): what the
classical baselines (trainables.baselines) and UVAC's start from the classical clusters
(``prior_init input``) apply to flattened clips before a mixture is fitted."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Standardiser"]


@dataclass(frozen=True)
class Standardiser:
    """``(x - mean) / std`` per dimension, both fitted on the train rows (std 0 -> 1)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x_train: np.ndarray) -> "Standardiser":
        mean = x_train.mean(0, dtype=np.float64)
        std = x_train.std(0, dtype=np.float64)
        return cls(mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32, copy=False)
