"""One split of a feature table as tensors on the training device (:class:`SplitData`), batched.

The data live on the device when they fit (:func:`fits_on_device`: moved once, batches indexed
on the device, no DataLoader); otherwise they stay pinned on the host and each batch is moved.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from trainables.models import Batch

__all__ = ["SplitData", "fits_on_device"]


class SplitData:
    """One split's tensors on the device (or pinned on the host when they do not fit)."""

    def __init__(self, table, device: torch.device, resident: bool, groups: bool = False):
        """``groups``: batches carry each clip's speaker index (``Batch.group``, from
        ``table.speaker_ids``: given, or inferred under ``voice`` normalisation), for a config that
        uses speaker ids in training (``ClusteringModel.speaker_id_settings``)."""
        self.n = len(table)
        dev = device if resident else torch.device("cpu")
        self.spec = table.spectrogram.to(dev)  # float16 as stored: half the memory
        self.mask = table.mask.to(device=dev, dtype=torch.float32)
        self.stats = table.norm_stats.to(device=dev, dtype=torch.float32)
        if not resident and device.type == "cuda":
            self.spec, self.mask, self.stats = (t.pin_memory() for t in (self.spec, self.mask, self.stats))
        self.group = None
        if groups:
            index = np.unique(np.asarray(table.speaker_ids).astype(str), return_inverse=True)[1].reshape(-1)
            self.group = torch.as_tensor(index.astype(np.int64), device=dev)
        self.device = device

    def batch(self, idx: torch.Tensor) -> Batch:
        idx = idx.to(self.spec.device)
        x = self.spec.index_select(0, idx)
        m = self.mask.index_select(0, idx)
        s = self.stats.index_select(0, idx)
        if x.device != self.device:
            x, m, s = (t.to(self.device, non_blocking=True) for t in (x, m, s))
        g = None if self.group is None else self.group.index_select(0, idx).to(self.device)
        return Batch(x.float(), m, s, group=g)

    def in_order(self, batch_size: int = 256) -> Iterator[Batch]:
        """Every row once, in stored order (evaluation, warm-up hooks)."""
        for start in range(0, self.n, batch_size):
            yield self.batch(torch.arange(start, min(start + batch_size, self.n)))


def fits_on_device(table, device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    need = table.spectrogram.numel() * 2 + table.mask.numel() * 4 + table.norm_stats.numel() * 4
    free, _total = torch.cuda.mem_get_info(device)
    return need < 0.5 * free
