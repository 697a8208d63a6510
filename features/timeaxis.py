"""The time axis of a front end: the activity mask of a padded clip, or its trimmed and stretched frames.

* ``pad`` (the papers): the clip is zero-padded to the time context; :func:`pad_mask` marks the
  frames that hold at least one sample of it (the reconstruction loss and ``pool="mean"`` use it).
* ``stretch`` (classical acoustic word embeddings, Kamper et al. 2016): :func:`active_span` keeps
  the frames from the first to the last whose mean log energy is within ``trim_nats`` of the
  clip's peak (leading and trailing silence dropped, pauses inside kept), and
  :func:`resample_frames` maps that span onto exactly ``n`` frames by linear interpolation, so
  that every clip has the same duration and all its frames are real.
"""
from __future__ import annotations

import torch

__all__ = ["pad_mask", "frame_log_energy", "active_span", "resample_frames", "stretch_active"]

_TINY_POWER = 1e-20


def pad_mask(n_samples: int, n_frames: int, preset) -> torch.Tensor:
    """[n_frames] float32: 1 where frame t (samples [t*hop, t*hop + n_fft), or centred) holds input."""
    t = torch.arange(n_frames)
    starts = t * preset.hop - (preset.n_fft // 2 if preset.center else 0)
    return (starts < int(n_samples)).to(torch.float32)


def frame_log_energy(power: torch.Tensor) -> torch.Tensor:
    """Mean over rows of log power, per frame: power [F, T] -> [T] (nats)."""
    return torch.log(power.clamp_min(_TINY_POWER)).mean(0)


def active_span(energy: torch.Tensor, trim_nats: float, mask: torch.Tensor | None = None) -> tuple[int, int]:
    """(start, stop) of the frames kept: from the first to the last frame whose energy [T] is
    within ``trim_nats`` of the maximum (over the real frames of ``mask`` when given)."""
    e = energy.clone().to(torch.float64)
    if mask is not None:
        e[mask <= 0] = -torch.inf
    keep = torch.nonzero(e >= e.max() - float(trim_nats)).flatten()
    return int(keep.min()), int(keep.max()) + 1


def resample_frames(s: torch.Tensor, n: int) -> torch.Tensor:
    """s [F, L] -> [F, n] by linear interpolation in time (frame centres aligned at both ends;
    a single frame is repeated)."""
    if s.shape[1] == n:
        return s.clone()
    if s.shape[1] == 1:
        return s.expand(-1, n).clone()
    out = torch.nn.functional.interpolate(s[None].to(torch.float64), size=n, mode="linear", align_corners=True)[0]
    return out.to(s.dtype)


def stretch_active(s: torch.Tensor, energy: torch.Tensor, trim_nats: float, n: int) -> torch.Tensor:
    """The active span of s [F, T] (by ``energy`` [T]) resampled to [F, n]."""
    start, stop = active_span(energy, trim_nats)
    return resample_frames(s[:, start:stop], int(n))
