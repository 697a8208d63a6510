"""Augmented views of a batch, made on the fly in the feature domain (docs/MODELS.md, "Invariance").

A view keeps the clip's identity (the word) and changes what should not matter for clustering:

=========  ===================================================================================
``speed``  tempo perturbation: a padded clip plays at rate r ~ U(1 - a, 1 + a) (its real frames
           and mask scale with it); a stretched clip, which has no duration left to change, gets a
           smooth monotone time warp t -> t + d sin(pi t), |d| <= a / pi (endpoints fixed)
``warp``   vocal-tract-length (frequency) warping: row f reads row f * alpha, alpha ~ U(1 - a, 1 + a)
           (linear, mel and MFCC presets: MFCCs are warped on the log-mel envelope they encode,
           ``D^T c`` with D the preset's orthonormal DCT rows, and projected back)
``shift``  time shift by s ~ U(-a, a) x T frames (padded: the content moves inside the padding,
           the mask moves with it; stretched: border frames repeat)
``eq``     random EQ: a smooth curve over frequency (three cosines, amplitude ~ N(0, a)) that
           drifts linearly from one random curve to another over the clip (a constant curve
           would be removed exactly by CMN); added to log-domain values, a gain on magnitudes
=========  ===================================================================================

``a`` is the op's strength (config ``aug_speed``, ``aug_warp``, ``aug_shift``, ``aug_eq``). Values
stay in the preset's range (clipped to [0, 1] under ``clip`` normalisation); padding frames
stay 0. Randomness comes from torch's global generator, which checkpoints save, so a resumed
run draws the same views. :func:`augmenter_for` builds the loop's augmenter from a config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch.nn import functional as F

__all__ = ["AUGMENTATIONS", "Augmenter", "augmenter_for", "parse_augment"]

AUGMENTATIONS = ("speed", "warp", "shift", "eq")
STRENGTH_KEYS = {op: f"aug_{op}" for op in AUGMENTATIONS}


def parse_augment(spec: str) -> tuple[str, ...]:
    """``"speed,warp"`` -> ("speed", "warp"); "" / "none" -> (); ValueError naming an unknown op."""
    ops = tuple(p for p in str(spec).replace(" ", "").split(",") if p and p != "none")
    bad = [p for p in ops if p not in AUGMENTATIONS]
    if bad:
        raise ValueError(f"augment: unknown augmentation(s) {', '.join(bad)}; choose from {', '.join(AUGMENTATIONS)} "
                         f"(comma separated) or none")
    return ops


@dataclass(frozen=True)
class Augmenter:
    """Makes one augmented view of a batch: ``(x [B, F, T], mask [B, T]) -> (x', mask')``, same shapes.

    ops        augmentations applied, in the order of :data:`AUGMENTATIONS`
    strengths  op -> a (see the module docstring)
    stretched  the preset's time axis is ``stretch`` (every frame real)
    bounded    values in [0, 1] (``clip`` normalisation): clipped back into it
    log_domain the values are log-compressed (log-mel, MFCC); else magnitudes
    dct        MFCC presets: the orthonormal DCT rows [F, n_mels] the cepstra came from, else None
    """

    ops: tuple[str, ...]
    strengths: Mapping[str, float]
    stretched: bool
    bounded: bool
    log_domain: bool
    dct: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, mask: torch.Tensor, shared: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """One view of every clip; ``shared``: one draw of the ops' parameters for the whole batch (every
        clip transformed alike, so a clip's view does not depend on the batch it is in: test-time views)."""
        if x.ndim != 3 or mask.shape != (x.shape[0], x.shape[2]):
            raise ValueError(f"augment expects x [B, F, T] and mask [B, T], got {tuple(x.shape)}, {tuple(mask.shape)}")
        x = x.float()
        draws = 1 if shared else x.shape[0]
        spectral = self._to_spectral(x)
        spectral, mask = self._resample(spectral, mask.float(), draws)
        if "eq" in self.ops:
            spectral = self._eq(spectral, draws)
        out = self._from_spectral(spectral) * mask[:, None, :]
        if self.bounded:
            out = out.clamp(0.0, 1.0)
        return out, mask

    # -- the spectral domain (MFCCs are warped on the log-mel envelope they encode) -------------
    def _to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.dct is None else torch.einsum("fm,bft->bmt", self.dct.to(x), x)

    def _from_spectral(self, s: torch.Tensor) -> torch.Tensor:
        return s if self.dct is None else torch.einsum("fm,bmt->bft", self.dct.to(s), s)

    # -- speed, warp and shift: one resampling of the image ----------------------------------------
    def _uniform(self, b: int, draws: int, op: str, device) -> torch.Tensor:
        """[b] values ~ U(-a, a) of ``op``, ``draws`` (b or 1) of them drawn."""
        a = float(self.strengths.get(op, 0.0)) if op in self.ops else 0.0
        return ((torch.rand(draws, device=device) * 2 - 1) * a).expand(b)

    def _resample(self, s: torch.Tensor, mask: torch.Tensor, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not {"speed", "warp", "shift"} & set(self.ops):
            return s, mask
        b, f, t = s.shape
        dev = s.device
        u = torch.linspace(0.0, 1.0, t, device=dev)[None]  # output frame positions, 0..1
        speed = self._uniform(b, draws, "speed", dev)[:, None]
        shift = self._uniform(b, draws, "shift", dev)[:, None]
        if self.stretched:  # no duration to change: a smooth monotone warp, endpoints fixed
            src_t = u + speed / math.pi * torch.sin(math.pi * u) - shift
        else:  # the clip plays at rate 1 + speed, delayed by shift
            src_t = (u - shift) * (1.0 + speed)
        alpha = 1.0 + self._uniform(b, draws, "warp", dev)[:, None]
        src_f = torch.linspace(0.0, 1.0, f, device=dev)[None] * alpha  # [B, F]
        grid = torch.stack([(src_t * 2 - 1)[:, None, :].expand(b, f, t), (src_f * 2 - 1)[:, :, None].expand(b, f, t)],
                           dim=-1)
        out = F.grid_sample(s[:, None], grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
        if self.stretched:
            return out, mask
        mgrid = grid[:, :1, :, :].clone()
        mgrid[..., 1] = 0.0
        new_mask = F.grid_sample(mask[:, None, None, :], mgrid, mode="nearest", padding_mode="zeros",
                                 align_corners=True)
        return out, new_mask[:, 0, 0]

    # -- random EQ ---------------------------------------------------------------------------------
    def _eq(self, s: torch.Tensor, draws: int) -> torch.Tensor:
        b, f, t = s.shape
        a = float(self.strengths.get("eq", 0.0))
        freq = torch.linspace(0.0, math.pi, f, device=s.device)
        basis = torch.stack([torch.cos(k * freq) for k in (1, 2, 3)])  # [3, F]
        start, end = ((torch.randn(draws, 3, device=s.device) * a @ basis).expand(b, f) for _ in range(2))  # [B, F]
        w = torch.linspace(0.0, 1.0, t, device=s.device)[None, None]
        curve = start[:, :, None] * (1 - w) + end[:, :, None] * w  # [B, F, T]
        return s + curve if self.log_domain else s * torch.exp(curve)


def augmenter_for(cfg: Mapping[str, Any], preset: Any) -> Augmenter | None:
    """The augmenter a config asks for (None when ``augment`` is off); ``preset`` is the table's."""
    ops = parse_augment(cfg.get("augment", "none"))
    if not ops:
        return None
    dct = None
    if preset is not None and preset.scale == "mfcc":
        import torchaudio

        dct = torchaudio.functional.create_dct(preset.n_bins + 1, preset.n_mels, norm="ortho").T[1:].contiguous()
    return Augmenter(
        ops=ops,
        strengths={op: float(cfg[key]) for op, key in STRENGTH_KEYS.items()},
        stretched=preset is not None and preset.duration_mode == "stretch",
        bounded=preset is None or bool(preset.bounded),
        log_domain=preset is None or preset.compression == "log",
        dct=dct,
    )
