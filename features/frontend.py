"""Front ends: waveform -> normalised spectrogram + activity mask + per-clip statistics.

Everything is expressed in seconds and hertz (docs/MODELS.md, "Front ends"); sample counts are derived
from the preset's ``sample_rate`` and checked to be whole numbers. Every input is resampled
to the preset's rate before the STFT (the AudioMNIST trap: 128 x 99 only comes out at 48 kHz
without centre padding).

Normalisation (per clip, both papers: "normalised by mean and variance, then min-max to
[0, 1]"), computed over the *real* frames only (mask == 1), so that the amount of zero
padding does not change a clip's statistics::

    s = compress(linear)                  # "none": s = linear magnitude; "log": s = log(linear + eps)
    z = (s - mean) / std                  # mean, std over all bins of the real frames
    x = (z - zmin) / (zmax - zmin)        # zmin, zmax over the real frames -> x in [0, 1]
    x[:, padding frames] = 0              # padding frames carry no information (masked in the loss)

``norm_stats = (mean, std, zmin, zmax)`` holds the values actually used (``std`` replaced by 1
when it is ~0, ``zmax`` by ``zmin + 1`` when the range is ~0: never a division by zero), so
that :func:`denormalise` inverts the mapping exactly on the real frames.

Compression choice: the AudioMNIST paper takes "the module of the output of the STFT" and
normalises it, with no log: ``audiomnist`` uses ``compression="none"``. The categorical UVAC
paper calls its urban input a mel-frequency *cepstrum*, which implies a log: ``urban4s``,
``urban10s`` (and ``compact``) use ``compression="log"`` (log-mel magnitude). Either way the
mel filterbank is applied to the *magnitude* (power=1), so :func:`denormalise` returns a linear
magnitude (mel-)spectrogram: the generalised KL loss uses it as is, Itakura-Saito squares it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torchaudio

__all__ = [
    "Preset",
    "PRESETS",
    "get_preset",
    "ClipFeatures",
    "compute_features",
    "denormalise",
    "resample",
]

_TINY = 1e-8


@dataclass(frozen=True)
class Preset:
    """A front end, in seconds and hertz.

    name:         preset name
    sample_rate:  Hz; every input is resampled to it
    duration_s:   time context in seconds; shorter clips are zero-padded, longer ones must be
                  cropped upstream (``features.audio.load_audio`` does and flags them)
    win_s, hop_s: STFT window and hop in seconds (n_fft = window length in samples)
    window:       ``"hann"`` (periodic Hann, torch's default)
    scale:        ``"linear"`` (STFT bins ``first_bin .. first_bin + n_bins - 1``) or ``"mel"``
    n_bins:       frequency rows of the output (linear bins kept, or mel bands)
    first_bin:    linear scale only: first STFT bin kept (1 drops DC)
    compression:  ``"none"`` (magnitude) or ``"log"`` (``log(magnitude + log_eps)``)
    log_eps:      floor inside the log, in linear magnitude units
    center:       STFT centre padding; False for every paper preset
    description:  one line for humans
    """

    name: str
    sample_rate: int
    duration_s: float
    win_s: float
    hop_s: float
    scale: str
    n_bins: int
    window: str = "hann"
    first_bin: int = 0
    compression: str = "none"
    log_eps: float = 1e-5
    center: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.scale not in ("linear", "mel"):
            raise ValueError(f"preset {self.name!r}: scale must be 'linear' or 'mel', got {self.scale!r}")
        if self.compression not in ("none", "log"):
            raise ValueError(f"preset {self.name!r}: compression must be 'none' or 'log', got {self.compression!r}")
        if self.window != "hann":
            raise ValueError(f"preset {self.name!r}: only the 'hann' window is supported, got {self.window!r}")
        if self.sample_rate <= 0 or self.duration_s <= 0 or self.win_s <= 0 or self.hop_s <= 0:
            raise ValueError(f"preset {self.name!r}: sample_rate, duration_s, win_s, hop_s must be > 0")
        for what, sec in (("win_s", self.win_s), ("hop_s", self.hop_s), ("duration_s", self.duration_s)):
            n = sec * self.sample_rate
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise ValueError(
                    f"preset {self.name!r}: {what}={sec} s is not a whole number of samples at {self.sample_rate} Hz"
                )
        if self.n_samples < self.n_fft:
            raise ValueError(f"preset {self.name!r}: duration shorter than one STFT window")
        if self.scale == "linear":
            if self.first_bin < 0 or self.first_bin + self.n_bins > self.n_fft // 2 + 1:
                raise ValueError(
                    f"preset {self.name!r}: bins {self.first_bin}..{self.first_bin + self.n_bins - 1} "
                    f"exceed the {self.n_fft // 2 + 1} STFT bins"
                )
        if self.n_bins <= 0 or self.log_eps <= 0:
            raise ValueError(f"preset {self.name!r}: n_bins and log_eps must be > 0")

    # Derived sample counts -------------------------------------------------------------
    @property
    def n_fft(self) -> int:
        """STFT window length in samples (= FFT size)."""
        return int(round(self.win_s * self.sample_rate))

    @property
    def hop(self) -> int:
        """STFT hop in samples."""
        return int(round(self.hop_s * self.sample_rate))

    @property
    def n_samples(self) -> int:
        """Samples in the time context (duration_s at sample_rate)."""
        return int(round(self.duration_s * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """STFT frames over the time context (no centre padding: (S - n_fft) // hop + 1)."""
        if self.center:
            return self.n_samples // self.hop + 1
        return (self.n_samples - self.n_fft) // self.hop + 1

    @property
    def shape(self) -> tuple[int, int]:
        """(F, T) of one clip's spectrogram."""
        return self.n_bins, self.n_frames

    @property
    def bin_hz(self) -> float:
        """Width of one linear STFT bin in Hz."""
        return self.sample_rate / self.n_fft

    # Serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preset":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preset fields {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "Preset":
        return cls.from_dict(json.loads(s))

    def digest(self) -> str:
        """A stable hash of every field except the description."""
        d = self.to_dict()
        d.pop("description", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


PRESETS: dict[str, Preset] = {
    "audiomnist": Preset(
        name="audiomnist",
        sample_rate=48000,
        duration_s=1.0,
        win_s=0.02,  # 960 samples at 48 kHz
        hop_s=0.01,  # 480 samples
        scale="linear",
        n_bins=128,
        first_bin=1,  # drop DC, keep bins 1..128 = 50 Hz .. 6.4 kHz
        compression="none",
        description="UVAC paper (AudioMNIST): 48 kHz, 1 s, Hann 960 / hop 480, |STFT| bins 1..128 -> 128 x 99",
    ),
    "urban4s": Preset(
        name="urban4s",
        sample_rate=16000,
        duration_s=4.0,
        win_s=0.06,  # 960 samples at 16 kHz
        hop_s=0.03,  # 50% overlap
        scale="mel",
        n_bins=128,
        compression="log",
        description="Categorical UVAC paper (UrbanSound8K): 16 kHz, 4 s, Hann 960, 50% overlap, 128 log-mel -> 128 x 132",
    ),
    "urban10s": Preset(
        name="urban10s",
        sample_rate=16000,
        duration_s=10.0,
        win_s=0.06,
        hop_s=0.03,
        scale="mel",
        n_bins=128,
        compression="log",
        description="Categorical UVAC paper (TAU2019): 16 kHz, 10 s, Hann 960, 50% overlap, 128 log-mel -> 128 x 332",
    ),
    "compact": Preset(
        name="compact",
        sample_rate=16000,
        duration_s=1.0,
        win_s=0.06,
        hop_s=0.03,
        scale="mel",
        n_bins=64,
        compression="log",
        description=(
            "Small preset (not from the papers) for the embedded synthetic default, so that CPU studies "
            "run in minutes: 16 kHz, 1 s, Hann 960 / hop 480, 64 log-mel -> 64 x 32"
        ),
    ),
}

# The audiomnist front end with log compression (not in the papers): dense inputs instead of the
# sparse linear magnitude, everything else the same.
PRESETS["audiomnist_log"] = dataclasses.replace(
    PRESETS["audiomnist"], name="audiomnist_log", compression="log", log_eps=1e-4,
    description=("The audiomnist front end with log compression (not in the papers): log(|STFT| + 1e-4), "
                 "bins 1..128 -> 128 x 99"),
)

# The paper shapes, asserted once at import (docs/MODELS.md, "Front ends").
assert PRESETS["audiomnist"].shape == (128, 99), PRESETS["audiomnist"].shape
assert PRESETS["audiomnist_log"].shape == (128, 99), PRESETS["audiomnist_log"].shape
assert PRESETS["urban4s"].shape == (128, 132), PRESETS["urban4s"].shape
assert PRESETS["urban10s"].shape == (128, 332), PRESETS["urban10s"].shape
assert PRESETS["compact"].shape == (64, 32), PRESETS["compact"].shape


def get_preset(name: str | Preset, **overrides: Any) -> Preset:
    """A named preset, optionally with fields replaced (e.g. ``duration_s=2.0``).

    Passing a :class:`Preset` returns it (with overrides applied). ``None`` overrides are ignored.
    """
    if isinstance(name, Preset):
        base = name
    else:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        base = PRESETS[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return base
    known = {f.name for f in dataclasses.fields(Preset)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unknown preset fields {sorted(bad)}; known: {sorted(known)}")
    return dataclasses.replace(base, **overrides)


@dataclass
class ClipFeatures:
    """The features of one clip.

    spectrogram [F, T] float32 in [0, 1] (0 on padding frames)
    mask        [T]    float32, 1 on frames containing real audio, 0 on pure zero padding
    norm_stats  [4]    float32 (mean, std, zmin, zmax), see module docstring
    """

    spectrogram: torch.Tensor
    mask: torch.Tensor
    norm_stats: torch.Tensor


@lru_cache(maxsize=16)
def _transforms(preset: Preset) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    spec = torchaudio.transforms.Spectrogram(
        n_fft=preset.n_fft,
        win_length=preset.n_fft,
        hop_length=preset.hop,
        window_fn=torch.hann_window,
        power=1.0,  # magnitude
        center=preset.center,
    )
    mel = None
    if preset.scale == "mel":
        mel = torchaudio.transforms.MelScale(
            n_mels=preset.n_bins,
            sample_rate=preset.sample_rate,
            f_min=0.0,
            f_max=preset.sample_rate / 2,
            n_stft=preset.n_fft // 2 + 1,
        )
    return spec, mel


def resample(waveform: torch.Tensor, orig_rate: int, preset: Preset) -> torch.Tensor:
    """Resample a mono waveform [S] from ``orig_rate`` to the preset's rate (torchaudio)."""
    if int(orig_rate) == preset.sample_rate:
        return waveform
    return torchaudio.functional.resample(waveform, int(orig_rate), preset.sample_rate)


def linear_spectrogram(waveform: torch.Tensor, preset: Preset) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear magnitude (mel-)spectrogram [F, T] and the activity mask [T] of a waveform.

    ``waveform`` [S] at the preset's rate, S <= preset.n_samples; it is zero-padded at the end
    to the time context. Frame t covers samples [t*hop, t*hop + n_fft); it is real (mask 1) when
    it contains at least one sample of the input.
    """
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
    x = torch.zeros(preset.n_samples, dtype=torch.float32)
    x[:n] = waveform.to(torch.float32)
    spec_t, mel_t = _transforms(preset)
    with torch.no_grad():
        mag = spec_t(x)  # [n_fft//2+1, T]
        if mel_t is not None:
            mag = mel_t(mag)
        else:
            mag = mag[preset.first_bin : preset.first_bin + preset.n_bins]
    t = torch.arange(mag.shape[1])
    if preset.center:
        starts = t * preset.hop - preset.n_fft // 2
    else:
        starts = t * preset.hop
    mask = (starts < n).to(torch.float32)
    if tuple(mag.shape) != preset.shape:
        raise AssertionError(f"preset {preset.name!r}: got spectrogram {tuple(mag.shape)}, expected {preset.shape}")
    return mag.contiguous(), mask


def compute_features(waveform: torch.Tensor, preset: Preset, sample_rate: int | None = None) -> ClipFeatures:
    """Waveform [S] -> :class:`ClipFeatures` (spectrogram [F, T] in [0, 1], mask [T], norm_stats [4]).

    ``sample_rate``: the waveform's rate; when given and different from the preset's, the
    waveform is resampled first. When omitted, the waveform must already be at the preset's rate.
    """
    if sample_rate is not None:
        waveform = resample(waveform, sample_rate, preset)
    mag, mask = linear_spectrogram(waveform, preset)
    s = compress(mag, preset)
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
    x = torch.zeros_like(s)
    x[:, real] = ((z - zmin) / (zmax - zmin)).clamp(0.0, 1.0).to(torch.float32)
    stats = torch.stack([mean, std, zmin, zmax]).to(torch.float32)
    return ClipFeatures(spectrogram=x, mask=mask, norm_stats=stats)


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
    single = x01.ndim == 2
    if single:
        x01 = x01.unsqueeze(0)
        norm_stats = norm_stats.unsqueeze(0)
    if x01.ndim != 3 or norm_stats.ndim != 2 or norm_stats.shape != (x01.shape[0], 4):
        raise ValueError(
            f"denormalise expects x01 [B, F, T] and norm_stats [B, 4], got {tuple(x01.shape)} and {tuple(norm_stats.shape)}"
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

