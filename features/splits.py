"""Train / validation / test splits, deterministic for a seed and independent of input order.

Two schemes, both stored in the cache (``splits.parquet``: id, split_random, split_group) and
chosen at load time (``load_table(dir, split_scheme="random" | "group")``):

* :func:`random_split`: the papers' protocol, a seeded random 80/10/10 over clips
  (AudioMNIST: exactly 24,000 / 3,000 / 3,000). Counts are exact: ``round(f * N)`` for val
  and test, the rest for train.
* :func:`group_split`: no group (speaker, fold, location) in two splits; groups are shuffled
  with the seed and dealt greedily to the split furthest below its target clip count, so the
  clip proportions approach the fractions as closely as the group sizes allow.

Both are pure functions of (seed, set of ids[, groups]): the builder recomputes them over all
ids on every build, so an incremental build gives the same splits as a clean build.

:func:`rotate_validation` moves the random split's validation split over the clips outside test
(config key ``val_fold``, applied at load time): cross-validation over seeds, so that settings are
chosen on more validation clips than one 10 % split holds while the test split stays where it is.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {fractions!r}")
    f = tuple(float(x) for x in fractions)
    if any(x < 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions!r}")
    return f  # type: ignore[return-value]


def _check_ids(ids: Sequence[str]) -> np.ndarray:
    arr = np.asarray(list(ids), dtype=object).astype(str)
    if len(np.unique(arr)) != len(arr):
        raise ValueError("ids must be unique")
    return arr


def random_split(ids: Sequence[str], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """Split names [N] ("train" | "val" | "test"), aligned with ``ids``.

    The ids are sorted before the seeded permutation, so the result does not depend on their
    order. Val and test get ``round(f * N)`` clips each, train the rest.
    """
    f = _check_fractions(fractions)
    arr = _check_ids(ids)
    n = len(arr)
    order = np.argsort(arr, kind="stable")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(f[1] * n))
    n_test = int(round(f[2] * n))
    n_train = n - n_val - n_test
    names = np.empty(n, dtype=object)
    names[:n_train] = "train"
    names[n_train : n_train + n_val] = "val"
    names[n_train + n_val :] = "test"
    out = np.empty(n, dtype=object)
    out[order[perm]] = names
    return out.astype(str)


def group_split(
    ids: Sequence[str], groups: Sequence[str], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> np.ndarray:
    """Split names [N] such that every group lies in exactly one split.

    Groups are sorted, shuffled with ``seed``, then each goes to the split with the largest
    remaining deficit (target clips - clips so far). If a split with a non-zero fraction ends up
    empty while another holds two groups or more, the smallest group of the fullest split moves
    there. With fewer groups than non-empty fractions some split stays empty (a warning says so).
    """
    f = _check_fractions(fractions)
    arr = _check_ids(ids)
    grp = np.asarray(list(groups), dtype=object).astype(str)
    if len(grp) != len(arr):
        raise ValueError(f"groups has {len(grp)} entries, ids {len(arr)}")
    n = len(arr)
    uniq, inverse, counts = np.unique(grp, return_inverse=True, return_counts=True)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    targets = np.array(f) * n
    filled = np.zeros(3)
    assign = np.full(len(uniq), -1)
    for g in perm:
        k = int(np.argmax(targets - filled))
        assign[g] = k
        filled[k] += counts[g]
    wanted = [k for k in range(3) if f[k] > 0]
    for k in wanted:
        if (assign == k).any():
            continue
        members = {j: np.flatnonzero(assign == j) for j in wanted}
        donor = max(members, key=lambda j: len(members[j]))
        if len(members[donor]) < 2:
            warnings.warn(
                f"group_split: only {len(uniq)} group(s) for {len(wanted)} splits; split {SPLIT_NAMES[k]!r} is empty",
                stacklevel=2,
            )
            continue
        g = members[donor][np.argmin(counts[members[donor]])]
        assign[g] = k
    return np.asarray(SPLIT_NAMES, dtype=object)[assign[inverse]].astype(str)


def validation_folds(split: Sequence[str]) -> int:
    """How many validation folds :func:`rotate_validation` offers for ``split``: the stored validation
    split (fold 0) and as many disjoint validation-sized folds as the training split holds (1 when
    there is no validation split)."""
    names = np.asarray(split).astype(str)
    n_val, n_train = int((names == "val").sum()), int((names == "train").sum())
    return 1 + (n_train // n_val if n_val else 0)


def rotate_validation(split: Sequence[str], ids: Sequence[str], fold: int, seed: int) -> np.ndarray:
    """Split names [N] with validation fold ``fold``: 0 is ``split`` as it is; fold k >= 1 swaps the
    stored validation clips with the k-th fold of the training clips (sorted by id, permuted with
    ``seed``, cut into :func:`validation_folds` - 1 folds of the validation's size; a remainder stays
    in train). The test clips never move, and the folds 0..K-1 are disjoint validation splits of the
    same size that together cover every non-test clip but the remainder. ValueError for a fold
    outside 0..K-1."""
    names = np.asarray(split).astype(str).copy()
    arr = _check_ids(ids)
    if len(arr) != len(names):
        raise ValueError(f"split has {len(names)} entries, ids {len(arr)}")
    k = validation_folds(names)
    if not 0 <= int(fold) < k:
        raise ValueError(f"val_fold={fold}: this split offers {k} validation fold(s), 0-{k - 1} "
                         f"({int((names == 'val').sum())} validation clips, {int((names == 'train').sum())} training)")
    if fold == 0:
        return names
    val = np.flatnonzero(names == "val")
    train = np.flatnonzero(names == "train")
    train = train[np.argsort(arr[train], kind="stable")]
    train = train[np.random.default_rng(seed).permutation(len(train))]
    chosen = train[(fold - 1) * len(val): fold * len(val)]
    names[val] = "train"
    names[chosen] = "val"
    return names
