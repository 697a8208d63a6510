"""Nearest-neighbour views (SCAN, Van Gansbeke et al. 2020; docs/MODELS.md, "Invariance").

An augmented view changes a clip and keeps its word; a neighbour view *is another clip* that is
probably the same word: one of the clip's ``k`` nearest training clips in the input. On real
spoken digits 96 % of a clip's 10 nearest neighbours in ``awe_raw`` say the same digit (mostly the
same speaker's other takes), so the consistency term between a clip and a neighbour pulls whole
neighbourhoods into one cluster, which no augmentation of a single clip can do. Measured on FSDD
it does not pay: 99 % of those neighbours are the same speaker's takes, so nothing crosses the
speakers (docs/QUALITY.md, "Neighbour views"); a knob, off by default.

The space is fixed before training and uses no labels: the train split's inputs flattened,
standardised per dimension, projected on their leading principal components, compared by cosine
similarity. :func:`nearest_neighbours` computes it once per run (``[N, k]`` indices into the
train split, in chunks: O(N^2 x d) time, O(chunk x N) memory); :class:`NeighbourViews` draws one
neighbour per clip of a batch from the run's own generator (checkpointed with it).
"""
from __future__ import annotations

import torch

__all__ = ["NEIGHBOUR_PCA", "nearest_neighbours", "NeighbourViews"]

NEIGHBOUR_PCA = 20  # principal components of the standardised input the neighbours are found in
_CHUNK = 1024


def neighbour_space(x: torch.Tensor, dims: int = NEIGHBOUR_PCA) -> torch.Tensor:
    """The unit-norm embedding ``[N, min(dims, D, N)]`` neighbours are found in, from inputs ``x``
    ``[N, F, T]`` (or ``[N, D]``): standardised per dimension, projected on the leading principal
    components."""
    flat = x.reshape(x.shape[0], -1).double()
    flat = flat - flat.mean(0)
    flat = flat / flat.std(0).clamp_min(1e-8)
    _u, _s, vt = torch.linalg.svd(flat, full_matrices=False)
    z = flat @ vt[:min(dims, vt.shape[0])].T
    return torch.nn.functional.normalize(z.float(), dim=1)


def nearest_neighbours(x: torch.Tensor, k: int, dims: int = NEIGHBOUR_PCA) -> torch.Tensor:
    """Indices ``[N, k]`` (int64) of each row's ``k`` most similar other rows of ``x`` ``[N, ...]``
    in :func:`neighbour_space`, most similar first; a row is never its own neighbour."""
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"neighbours: k must be between 1 and the number of training clips - 1 ({n - 1}), got {k}")
    z = neighbour_space(x, dims)
    out = torch.empty(n, k, dtype=torch.int64)
    for start in range(0, n, _CHUNK):
        sim = z[start:start + _CHUNK] @ z.T
        rows = torch.arange(start, min(start + _CHUNK, n))
        sim[rows - start, rows] = -float("inf")
        out[start:start + len(rows)] = sim.topk(k, dim=1).indices
    return out


class NeighbourViews:
    """Draws, for the train-split indices of a batch, one of each clip's ``k`` nearest neighbours."""

    def __init__(self, train_inputs: torch.Tensor, k: int):
        """``train_inputs``: the train split's inputs ``[N, F, T]`` in stored order."""
        self.k = int(k)
        self.index = nearest_neighbours(train_inputs.float().cpu(), self.k)

    def draw(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """For train indices ``idx`` ``[B]``: the indices ``[B]`` of one uniformly drawn neighbour each."""
        pick = torch.randint(self.k, (idx.shape[0],), generator=generator)
        return self.index[idx.cpu(), pick]
