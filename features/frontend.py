"""Front ends: waveform -> features [F, T] + activity mask + per-clip statistics.

What a front end *is* lives in :mod:`features.presets` (re-exported here); this module computes
it (docs/MODELS.md, "Front ends"). Every input is resampled to the preset's rate before the STFT
(the AudioMNIST trap: 128 x 99 only comes out at 48 kHz without centre padding). The steps:

1. **spectrum**: the STFT magnitude, then the linear bins kept, or the mel bands of the
   magnitude (``mel``), or, for ``mfcc``, cepstra c1..c_n: DCT-II (orthonormal) of the log mel
   *power* (the standard MFCC); :func:`spectral_frames`.
2. **time axis** (:mod:`features.timeaxis`): ``pad`` zero-pads to the time context and marks the
   frames holding real audio in the mask; ``stretch`` keeps the activity span (frames whose mean
   log energy is within ``trim_nats`` of the peak) and resamples it to ``stretch_frames`` frames
   by linear interpolation (mask all ones).
3. **normalisation** (:mod:`features.normalise`): ``clip`` (papers, below), ``band`` (CMN),
   ``speaker`` or ``voice`` (stored un-normalised here; CMVN per speaker or per inferred speaker
   when the table is loaded).

Every clip also gets its voice profile (:mod:`features.voice`), whatever the preset: the ``voice``
normalisation clusters the profiles into speakers when the table is loaded.

Normalisation ``clip`` (per clip, both papers: "normalised by mean and variance, then min-max to
[0, 1]"), computed over the *real* frames only (mask == 1), so that the amount of zero padding
does not change a clip's statistics::

    s = compress(linear)                  # "none": s = linear magnitude; "log": s = log(linear + eps)
    z = (s - mean) / std                  # mean, std over all bins of the real frames
    x = (z - zmin) / (zmax - zmin)        # zmin, zmax over the real frames -> x in [0, 1]
    x[:, padding frames] = 0              # padding frames carry no information (masked in the loss)

``norm_stats = (mean, std, zmin, zmax)`` holds the values actually used (``std`` replaced by 1
when it is ~0, ``zmax`` by ``zmin + 1`` when the range is ~0: never a division by zero), so
that :func:`denormalise` inverts the mapping exactly on the real frames. The real-valued
normalisations store ``(0, 1, 0, 1)``: nothing to invert (their presets are not ``invertible``).

Compression choice: the AudioMNIST paper takes "the module of the output of the STFT" and
normalises it, with no log: ``audiomnist`` uses ``compression="none"``. The categorical UVAC
paper calls its urban input a mel-frequency *cepstrum*, which implies a log: ``urban4s``,
``urban10s`` (and ``compact``) use ``compression="log"`` (log-mel magnitude). Either way the
mel filterbank is applied to the *magnitude* (power=1), so :func:`denormalise` returns a linear
magnitude (mel-)spectrogram: the generalised KL loss uses it as is, Itakura-Saito squares it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torchaudio

from features.normalise import IDENTITY_STATS, normalise_band, normalise_clip
from features.presets import PRESETS, Preset, get_preset
from features.timeaxis import frame_log_energy, pad_mask, stretch_active
from features.voice import voice_profile

__all__ = [
    "Preset",
    "PRESETS",
    "get_preset",
    "ClipFeatures",
    "compute_features",
    "denormalise",
    "resample",
    "spectral_frames",
]


@dataclass
class ClipFeatures:
    """The features of one clip.

    spectrogram [F, T] float32: in [0, 1] under ``clip`` normalisation, real-valued otherwise
                       (0 on padding frames)
    mask        [T]    float32, 1 on frames containing real audio, 0 on pure zero padding
                       (all ones when stretched)
    norm_stats  [4]    float32 (mean, std, zmin, zmax), see module docstring
    voice       [VOICE_BANDS] float32: the clip's voice profile (features.voice), whatever the preset
    """

    spectrogram: torch.Tensor
    mask: torch.Tensor
    norm_stats: torch.Tensor
    voice: torch.Tensor


@lru_cache(maxsize=16)
def _transforms(preset: Preset) -> tuple[torch.nn.Module, torch.nn.Module | None, torch.Tensor | None]:
    """(magnitude STFT, mel filterbank or None, DCT rows c1..c_n [n_bins, n_mels] or None)."""
    spec = torchaudio.transforms.Spectrogram(
        n_fft=preset.n_fft,
        win_length=preset.n_fft,
        hop_length=preset.hop,
        window_fn=torch.hann_window,
        power=1.0,  # magnitude
        center=preset.center,
    )
    mel, dct = None, None
    if preset.scale in ("mel", "mfcc"):
        mel = torchaudio.transforms.MelScale(
            n_mels=preset.n_mels if preset.scale == "mfcc" else preset.n_bins,
            sample_rate=preset.sample_rate,
            f_min=0.0,
            f_max=preset.sample_rate / 2,
            n_stft=preset.n_fft // 2 + 1,
        )
    if preset.scale == "mfcc":
        # create_dct gives [n_mels, n_mfcc] (orthonormal DCT-II); keep c1..c_n, drop c0 (the level)
        dct = torchaudio.functional.create_dct(preset.n_bins + 1, preset.n_mels, norm="ortho").T[1:].contiguous()
    return spec, mel, dct


def resample(waveform: torch.Tensor, orig_rate: int, preset: Preset) -> torch.Tensor:
    """Resample a mono waveform [S] from ``orig_rate`` to the preset's rate (torchaudio)."""
    if int(orig_rate) == preset.sample_rate:
        return waveform
    return torchaudio.functional.resample(waveform, int(orig_rate), preset.sample_rate)


def _mono(waveform: torch.Tensor, preset: Preset) -> torch.Tensor:
    """The checked waveform [S] (float32): mono, non-empty, within the time context."""
    if waveform.ndim == 2 and waveform.shape[0] == 1:
        waveform = waveform[0]
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got shape {tuple(waveform.shape)}")
    n = int(waveform.shape[0])
    if n == 0:
        raise ValueError("empty waveform: nothing to featurise")
    if n > preset.n_samples:
        raise ValueError(
            f"waveform has {n} samples, more than the {preset.n_samples} of preset {preset.name!r} "
            f"({preset.duration_s} s at {preset.sample_rate} Hz): crop it first (features.audio.load_audio does)"
        )
    return waveform.to(torch.float32)


def _padded(x: torch.Tensor, preset: Preset) -> torch.Tensor:
    """``pad``: zero-padded to the time context; ``stretch``: the clip itself (at least one window)."""
    length = preset.n_samples if preset.duration_mode == "pad" else max(int(x.shape[0]), preset.n_fft)
    out = torch.zeros(length, dtype=torch.float32)
    out[: x.shape[0]] = x
    return out


def linear_spectrogram(waveform: torch.Tensor, preset: Preset) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear magnitude (mel-)spectrogram [F, T_stft] and the activity mask [T_stft] of a waveform.

    ``waveform`` [S] at the preset's rate, S <= preset.n_samples; under ``pad`` it is zero-padded
    at the end to the time context. Frame t covers samples [t*hop, t*hop + n_fft); it is real
    (mask 1) when it contains at least one sample of the input. For ``mfcc`` presets the rows
    are the mel *power* bands the cepstra are computed from (``n_mels`` of them).
    """
    x = _mono(waveform, preset)
    spec_t, mel_t, _ = _transforms(preset)
    with torch.no_grad():
        mag = spec_t(_padded(x, preset))  # [n_fft//2+1, T]
        if preset.scale == "mfcc":
            mag = mel_t(mag * mag)
        elif mel_t is not None:
            mag = mel_t(mag)
        else:
            mag = mag[preset.first_bin : preset.first_bin + preset.n_bins]
    mask = pad_mask(int(x.shape[0]), int(mag.shape[1]), preset)
    if preset.duration_mode == "pad" and tuple(mag.shape) != (mag.shape[0], preset.n_frames):
        raise AssertionError(f"preset {preset.name!r}: got {tuple(mag.shape)} frames, expected {preset.n_frames}")
    return mag.contiguous(), mask


def spectral_frames(waveform: torch.Tensor, preset: Preset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features s [F, T_stft] before the time axis and the normalisation, mean log power per
    frame [T_stft] (nats), mask [T_stft]): the compressed spectrogram, or the cepstra for ``mfcc``."""
    lin, mask = linear_spectrogram(waveform, preset)
    _, _, dct = _transforms(preset)
    if preset.scale == "mfcc":
        log_power = torch.log(lin + preset.log_eps)  # lin is the mel power here
        return dct @ log_power, log_power.mean(0), mask
    return compress(lin, preset), frame_log_energy(lin * lin), mask


def compute_features(waveform: torch.Tensor, preset: Preset, sample_rate: int | None = None) -> ClipFeatures:
    """Waveform [S] -> :class:`ClipFeatures` (features [F, T], mask [T], norm_stats [4], voice profile).

    ``sample_rate``: the waveform's rate; when given and different from the preset's, the
    waveform is resampled first. When omitted, the waveform must already be at the preset's rate.
    Values: [0, 1] under ``clip`` normalisation; real-valued under ``band`` (each row has zero
    mean over the real frames) and ``speaker`` (un-normalised: the loader standardises per speaker).
    """
    if sample_rate is not None:
        waveform = resample(waveform, sample_rate, preset)
    s, energy, mask = spectral_frames(waveform, preset)
    if preset.duration_mode == "stretch":
        s = stretch_active(s, energy, preset.trim_nats, preset.stretch_frames)
        mask = torch.ones(preset.stretch_frames, dtype=torch.float32)
    if preset.normalisation == "clip":
        x, stats = normalise_clip(s, mask)
    elif preset.normalisation == "band":
        x, stats = normalise_band(s, mask), IDENTITY_STATS.clone()
    else:  # "none", or "speaker" / "voice": normalised per speaker at load time (features.normalise)
        x, stats = (s * mask[None, :]).to(torch.float32), IDENTITY_STATS.clone()
    if tuple(x.shape) != preset.shape:
        raise AssertionError(f"preset {preset.name!r}: got features {tuple(x.shape)}, expected {preset.shape}")
    return ClipFeatures(spectrogram=x.contiguous(), mask=mask, norm_stats=stats,
                        voice=voice_profile(_mono(waveform, preset), preset))


def compress(linear: torch.Tensor, preset: Preset) -> torch.Tensor:
    """The preset's compression of a linear magnitude spectrogram."""
    if preset.compression == "log":
        return torch.log(linear + preset.log_eps)
    return linear


def denormalise(x01: torch.Tensor, norm_stats: torch.Tensor, preset: Preset) -> torch.Tensor:
    """Invert the per-clip normalisation: [0, 1] values -> linear magnitude (differentiable).

    x01 [B, F, T] (or [F, T]) and norm_stats [B, 4] (or [4]) as produced by
    :func:`compute_features`. Returns the linear magnitude (mel-)spectrogram with x01's shape,
    clamped at 0 (only float rounding can go below). Exact on the real frames up to the storage
    dtype; padding frames (x = 0) map to the clip's minimum, and are masked in the loss anyway.
    """
    if not preset.invertible:
        raise ValueError(f"preset {preset.name!r} ({preset.scale}, {preset.normalisation} normalisation) cannot be "
                         f"de-normalised to a linear magnitude: the is / kl divergences need a linear or mel preset "
                         f"with clip normalisation")
    single = x01.ndim == 2
    if single:
        x01 = x01.unsqueeze(0)
        norm_stats = norm_stats.unsqueeze(0)
    if x01.ndim != 3 or norm_stats.ndim != 2 or norm_stats.shape != (x01.shape[0], 4):
        raise ValueError(
            f"denormalise expects x01 [B, F, T] and norm_stats [B, 4], got {tuple(x01.shape)} "
            f"and {tuple(norm_stats.shape)}"
        )
    dtype = x01.dtype if x01.dtype in (torch.float32, torch.float64) else torch.float32  # never compute in fp16
    st = norm_stats.to(dtype)
    x = x01.to(dtype)
    mean, std, zmin, zmax = (st[:, i].view(-1, 1, 1) for i in range(4))
    s = (x * (zmax - zmin) + zmin) * std + mean
    if preset.compression == "log":
        lin = torch.exp(s) - preset.log_eps
    else:
        lin = s
    lin = lin.clamp_min(0.0)
    return lin[0] if single else lin

