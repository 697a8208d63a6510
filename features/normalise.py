"""Normalisations of a front end (``Preset.normalisation``), per clip and per speaker.

* ``clip`` (both papers): per clip, over the bins of the real frames, mean/variance then
  min-max to [0, 1] (:func:`normalise_clip`, exactly inverted by ``features.frontend.denormalise``).
* ``band`` (cepstral mean normalisation, CMN): per clip, each row's mean over the real frames is
  removed (:func:`normalise_band`). A fixed channel or speaker offset per band (a constant EQ in the
  log domain) disappears; the values are real-valued.
* ``speaker`` (per-speaker CMVN): each row standardised over all real frames of all clips of the
  same speaker (:func:`normalise_speakers`). The statistics need every clip of the speaker, so the
  cache stores the un-normalised features and :func:`features.loader.load_table` applies this on
  load: an incremental build stays exact. It uses the speaker ids (side information, no labels),
  and is refused where the dataset's groups are not speakers (:func:`check_dataset`).
* ``voice``: the same CMVN, per speaker *inferred* from the clips' voice profiles
  (:func:`features.voice.fit_voices`, also on load): no speaker ids, any dataset.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["IDENTITY_STATS", "normalise_clip", "normalise_band", "normalise_speakers", "speaker_statistics",
           "apply_speaker_statistics", "check_dataset"]

_TINY = 1e-8
IDENTITY_STATS = torch.tensor([0.0, 1.0, 0.0, 1.0])  # (mean, std, zmin, zmax) of "nothing to invert"


def normalise_clip(s: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [F, T] in [0, 1] with 0 on padding frames, norm_stats [4] = (mean, std, zmin, zmax))."""
    real = mask > 0
    vals = s[:, real].to(torch.float64)
    mean = vals.mean()
    std = vals.std(unbiased=False)
    if not torch.isfinite(std) or std < _TINY:
        std = torch.ones((), dtype=torch.float64)
    z = (vals - mean) / std
    zmin, zmax = z.min(), z.max()
    if zmax - zmin < _TINY:
        zmax = zmin + 1.0
    x = torch.zeros(s.shape, dtype=torch.float32)
    x[:, real] = ((z - zmin) / (zmax - zmin)).clamp(0.0, 1.0).to(torch.float32)
    return x, torch.stack([mean, std, zmin, zmax]).to(torch.float32)


def normalise_band(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CMN: s [F, T] minus each row's mean over the real frames (0 on padding frames)."""
    real = mask > 0
    x = torch.zeros(s.shape, dtype=torch.float64)
    vals = s[:, real].to(torch.float64)
    x[:, real] = vals - vals.mean(1, keepdim=True)
    return x.to(torch.float32)


def speaker_statistics(spec: torch.Tensor, mask: torch.Tensor, groups: np.ndarray
                       ) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(speakers [G] sorted, mean [G, F], std [G, F], float64) of every row (band) of every speaker
    over that speaker's real frames; a constant row's std is 1 (nothing to divide)."""
    x = spec.to(torch.float64)
    m = (mask > 0).to(torch.float64)[:, None, :]  # [N, 1, T]
    groups = np.asarray(groups).astype(str)
    names = [str(g) for g in np.unique(groups)]
    means, stds = [], []
    for g in names:
        rows = torch.as_tensor(np.flatnonzero(groups == g), dtype=torch.long)
        xg, mg = x[rows], m[rows]
        count = mg.sum(dim=(0, 2)).clamp_min(1.0)  # [1] -> broadcast per row below
        mean = (xg * mg).sum(dim=(0, 2)) / count  # [F]
        var = (((xg - mean[None, :, None]) ** 2) * mg).sum(dim=(0, 2)) / count
        means.append(mean)
        stds.append(torch.where(var.sqrt() > _TINY, var.sqrt(), torch.ones_like(var)))
    f = spec.shape[1]
    empty = torch.zeros(0, f, dtype=torch.float64)
    return names, torch.stack(means) if means else empty, torch.stack(stds) if stds else empty


def apply_speaker_statistics(spec: torch.Tensor, mask: torch.Tensor, groups: np.ndarray, names: list[str],
                             mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """spec [N, F, T] standardised with the statistics (:func:`speaker_statistics`) of each row's
    speaker ``groups`` [N] -> [N, F, T] float32, padding frames 0. KeyError for a speaker not in ``names``."""
    index = {g: i for i, g in enumerate(names)}
    who = torch.as_tensor([index[str(g)] for g in np.asarray(groups).astype(str)], dtype=torch.long)
    m = (mask > 0).to(torch.float64)[:, None, :]
    mu, sd = mean.to(torch.float64)[who][:, :, None], std.to(torch.float64)[who][:, :, None]
    return (((spec.to(torch.float64) - mu) / sd) * m).to(torch.float32)


def normalise_speakers(spec: torch.Tensor, mask: torch.Tensor, groups: np.ndarray) -> torch.Tensor:
    """Per-speaker CMVN: spec [N, F, T], mask [N, T], groups [N] (speaker ids) -> [N, F, T] float32
    where every row (band) of every speaker has zero mean and unit variance over that speaker's
    real frames (padding frames stay 0). A constant row keeps variance 0 (divided by 1)."""
    names, mean, std = speaker_statistics(spec, mask, groups)
    return apply_speaker_statistics(spec, mask, groups, names, mean, std)


def check_dataset(preset, dataset: str | None, group_kind: str | None) -> None:
    """ValueError (one line) when ``preset`` normalises per speaker but ``dataset``'s groups are not speakers."""
    if preset.normalisation == "speaker" and group_kind != "speaker":
        raise ValueError(
            f"preset {preset.name!r} normalises per speaker, but the groups of dataset {dataset!r} are "
            f"{group_kind or 'not named'}, not speakers: choose a preset with normalisation 'band' or 'clip'")
