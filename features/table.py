"""The in-memory feature table that trainers receive (see docs/ARCHITECTURE.md)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

SPLITS = ("train", "val", "test")


@dataclass
class FeatureTable:
    """Spectrograms and everything needed to train on and evaluate them.

    Shapes (N clips, F frequency bins, T frames):
      spectrogram [N, F, T] float16 as stored (cast with ``.float()``): in [0, 1] under the papers' ``clip``
                            normalisation, real-valued under ``band`` / ``speaker`` (``preset.bounded``)
      mask        [N, T]    float32, 1 on frames of real audio, 0 on zero padding
      norm_stats  [N, 4]    float32 (mean, std, min, max) of the per-clip normalisation
      label_index [N]       int64 index into ``classes`` (evaluation only)
      voice       [N, B]    float32 voice profiles (features.voice), or None (hand-made tables)
      speakers    [N]       the inferred speaker of each clip under ``voice`` normalisation, else None:
                            :attr:`speaker_ids` is what the speaker-aware settings and baselines read
      voice_model           under ``voice``: the fitted voices and their statistics (features.voice.VoiceModel),
                            saved with a run so that a new clip is normalised as its voice; else None
    """

    ids: np.ndarray
    spectrogram: torch.Tensor
    mask: torch.Tensor
    norm_stats: torch.Tensor
    labels: np.ndarray
    label_index: torch.Tensor
    classes: list[str]
    groups: np.ndarray
    split: np.ndarray
    preset: Any
    cache_key: str
    dataset: str | None = None  # the dataset adapter's name (e.g. "fsdd"); None for hand-made tables
    voice: torch.Tensor | None = None
    speakers: np.ndarray | None = None
    voice_model: Any = None
    val_fold: int = 0  # the random split's validation fold it was loaded with (features.splits.rotate_validation)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.spectrogram.ndim != 3 or self.spectrogram.shape[0] != n:
            raise ValueError(f"spectrogram must be [N={n}, F, T], got {tuple(self.spectrogram.shape)}")
        if tuple(self.mask.shape) != (n, self.spectrogram.shape[2]):
            raise ValueError(f"mask must be [N, T]={n, self.spectrogram.shape[2]}, got {tuple(self.mask.shape)}")
        if tuple(self.norm_stats.shape) != (n, 4):
            raise ValueError(f"norm_stats must be [N, 4], got {tuple(self.norm_stats.shape)}")
        for name in ("labels", "label_index", "groups", "split", "voice", "speakers"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def speaker_ids(self) -> np.ndarray:
        """The speaker [N] of each clip as the speaker-aware settings and baselines see it: the
        inferred ones under ``voice`` normalisation (no side information), else the groups."""
        return self.groups if self.speakers is None else self.speakers

    @property
    def n_classes(self) -> int:
        """Number of distinct labels (evaluation classes)."""
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int]:
        """(F, T): the spectrogram shape of one clip."""
        return int(self.spectrogram.shape[1]), int(self.spectrogram.shape[2])

    def select(self, split: str) -> "FeatureTable":
        """The rows of one split (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        rows = np.flatnonzero(self.split == split)
        return self.take(rows)

    def take(self, rows: np.ndarray) -> "FeatureTable":
        rows = np.ascontiguousarray(rows)
        idx = torch.as_tensor(rows, dtype=torch.long)
        return replace(
            self,
            ids=self.ids[rows],
            spectrogram=self.spectrogram[idx],
            mask=self.mask[idx],
            norm_stats=self.norm_stats[idx],
            labels=self.labels[rows],
            label_index=self.label_index[idx],
            groups=self.groups[rows],
            split=self.split[rows],
            voice=None if self.voice is None else self.voice[idx],
            speakers=None if self.speakers is None else self.speakers[rows],
        )
