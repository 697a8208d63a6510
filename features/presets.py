"""What a front end is: :class:`Preset` (seconds and hertz), the named :data:`PRESETS`, :func:`get_preset`.

A preset says how a waveform becomes the [F, T] image a model sees (docs/MODELS.md, "Front ends"):

* the spectral representation: ``scale`` ``"linear"`` (STFT bins), ``"mel"`` (mel bands of the
  magnitude) or ``"mfcc"`` (cepstra c1..c_n of the log mel *power*, DCT-II orthonormal, ``n_mels``
  bands; the classical speech front end), with ``compression`` ``"none"`` or ``"log"``;
* the time axis (``duration_mode``): ``"pad"`` (the papers: zero-pad to ``duration_s``, the mask
  marks real frames) or ``"stretch"`` (activity-trimmed to the frames whose mean log energy is
  within ``trim_nats`` of the clip's peak, then resampled by linear interpolation to exactly
  ``stretch_frames`` frames; the mask is all ones). Stretching removes duration, the second
  nuisance after the speaker on spoken words (Kamper et al. 2016);
* the normalisation (``normalisation``): ``"clip"`` (the papers: per clip, mean/variance then
  min-max to [0, 1]), ``"band"`` (per clip, each row's mean over the real frames removed:
  cepstral mean normalisation, CMN; real-valued) or ``"speaker"`` (per speaker, each row
  standardised over all real frames of that speaker's clips: CMVN with speaker ids, applied
  when the table is loaded; only for datasets whose groups are speakers; it uses side
  information, and says so wherever it is reported), ``"voice"`` (the same CMVN per *inferred*
  speaker: the clips clustered into ``voices`` groups by their long-term average spectra,
  :mod:`features.voice`; no speaker ids, so no side information, and any dataset), or ``"none"``
  (the values as computed, real-valued: speaker and channel offsets kept, for models that learn
  them, e.g. a style factor).

Fields added after the papers' presets (``n_mels``, ``duration_mode``, ``stretch_frames``,
``trim_nats``, ``normalisation``, ``voices``) enter :meth:`Preset.digest` only when they differ from their
defaults, so the papers' presets keep the digests (and cache directories) they always had.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Preset", "PRESETS", "get_preset", "SCALES", "COMPRESSIONS", "DURATION_MODES", "NORMALISATIONS"]

SCALES = ("linear", "mel", "mfcc")
COMPRESSIONS = ("none", "log")
DURATION_MODES = ("pad", "stretch")
NORMALISATIONS = ("clip", "band", "speaker", "voice", "none")
# fields that do not enter the digest while at their default (they came after the papers' presets)
_LATE_FIELDS = ("n_mels", "duration_mode", "stretch_frames", "trim_nats", "normalisation", "voices")


@dataclass(frozen=True)
class Preset:
    """A front end, in seconds and hertz.

    name:           preset name
    sample_rate:    Hz; every input is resampled to it
    duration_s:     time context in seconds; shorter clips are zero-padded (``pad``), longer ones
                    are cropped upstream (``features.audio.load_audio`` does and flags them)
    win_s, hop_s:   STFT window and hop in seconds (n_fft = window length in samples)
    window:         ``"hann"`` (periodic Hann, torch's default)
    scale:          ``"linear"`` (STFT bins ``first_bin .. first_bin + n_bins - 1``), ``"mel"`` or
                    ``"mfcc"`` (cepstra c1..c_{n_bins} of the log mel power over ``n_mels`` bands)
    n_bins:         frequency rows of the output (linear bins kept, mel bands, or cepstra)
    first_bin:      linear scale only: first STFT bin kept (1 drops DC)
    compression:    ``"none"`` (magnitude) or ``"log"`` (``log(magnitude + log_eps)``; mfcc:
                    ``log(mel power + log_eps)``, always log)
    log_eps:        floor inside the log, in linear magnitude (mfcc: power) units
    center:         STFT centre padding; False for every paper preset
    description:    one line for humans
    n_mels:         mfcc only: mel bands before the DCT
    duration_mode:  ``"pad"`` (papers) or ``"stretch"`` (trimmed, resampled to ``stretch_frames``)
    stretch_frames: frames of a stretched clip
    trim_nats:      stretch only: frames kept span the first to the last frame whose mean log
                    energy is within this many nats of the clip's peak
    normalisation:  ``"clip"`` (papers, [0, 1]), ``"band"`` (CMN), ``"speaker"`` (CMVN per speaker),
                    ``"voice"`` (CMVN per inferred speaker) or ``"none"`` (as computed)
    voices:         ``voice`` only: how many speakers the clips are clustered into (a front-end
                    setting: the corpus's speaker count when known, else chosen on validation)
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
    n_mels: int = 0
    duration_mode: str = "pad"
    stretch_frames: int = 0
    trim_nats: float = 6.0
    normalisation: str = "clip"
    voices: int = 0

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"preset {self.name!r}: {msg}")

        for field, value, allowed in (("scale", self.scale, SCALES), ("compression", self.compression, COMPRESSIONS),
                                      ("duration_mode", self.duration_mode, DURATION_MODES),
                                      ("normalisation", self.normalisation, NORMALISATIONS)):
            if value not in allowed:
                raise bad(f"{field} must be one of {', '.join(allowed)}, got {value!r}")
        if self.window != "hann":
            raise bad(f"only the 'hann' window is supported, got {self.window!r}")
        if self.sample_rate <= 0 or self.duration_s <= 0 or self.win_s <= 0 or self.hop_s <= 0:
            raise bad("sample_rate, duration_s, win_s, hop_s must be > 0")
        for what, sec in (("win_s", self.win_s), ("hop_s", self.hop_s), ("duration_s", self.duration_s)):
            n = sec * self.sample_rate
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise bad(f"{what}={sec} s is not a whole number of samples at {self.sample_rate} Hz")
        if self.n_samples < self.n_fft:
            raise bad("duration shorter than one STFT window")
        if self.n_bins <= 0 or self.log_eps <= 0:
            raise bad("n_bins and log_eps must be > 0")
        if self.scale == "linear" and (self.first_bin < 0 or self.first_bin + self.n_bins > self.n_fft // 2 + 1):
            raise bad(f"bins {self.first_bin}..{self.first_bin + self.n_bins - 1} exceed the "
                      f"{self.n_fft // 2 + 1} STFT bins")
        if self.scale == "mfcc":
            if self.compression != "log":
                raise bad("mfcc cepstra are of the log mel power: compression must be 'log'")
            if not 0 < self.n_bins < self.n_mels:
                raise bad(f"mfcc keeps c1..c{self.n_bins}: needs n_mels > n_bins, got n_mels={self.n_mels}")
        elif self.n_mels:
            raise bad("n_mels is for scale 'mfcc' only (mel presets set their bands with n_bins)")
        if self.duration_mode == "stretch":
            if self.stretch_frames < 2:
                raise bad(f"stretch needs stretch_frames >= 2, got {self.stretch_frames}")
            if not self.trim_nats > 0:
                raise bad(f"trim_nats must be > 0, got {self.trim_nats}")
        elif self.stretch_frames:
            raise bad("stretch_frames is for duration_mode 'stretch' only")
        if self.normalisation == "voice" and self.voices < 2:
            raise bad(f"normalisation 'voice' clusters the clips into voices >= 2 speakers, got voices={self.voices}")
        if self.normalisation != "voice" and self.voices:
            raise bad("voices is for normalisation 'voice' only")

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
        """Frames of one clip: ``stretch_frames`` when stretched, else the STFT frames over the
        time context (no centre padding: (S - n_fft) // hop + 1)."""
        if self.duration_mode == "stretch":
            return int(self.stretch_frames)
        return self.stft_frames(self.n_samples)

    def stft_frames(self, n_samples: int) -> int:
        """STFT frames of ``n_samples`` samples (at least one window's worth is featurised)."""
        n = max(int(n_samples), self.n_fft)
        if self.center:
            return n // self.hop + 1
        return (n - self.n_fft) // self.hop + 1

    @property
    def shape(self) -> tuple[int, int]:
        """(F, T) of one clip's features."""
        return self.n_bins, self.n_frames

    @property
    def bin_hz(self) -> float:
        """Width of one linear STFT bin in Hz."""
        return self.sample_rate / self.n_fft

    @property
    def bounded(self) -> bool:
        """True when the values live in [0, 1] (``clip`` normalisation); else they are real-valued."""
        return self.normalisation == "clip"

    @property
    def invertible(self) -> bool:
        """True when :func:`features.frontend.denormalise` recovers the linear magnitude (the IS and
        generalised-KL divergences need it): clip normalisation of a linear or mel spectrogram."""
        return self.normalisation == "clip" and self.scale in ("linear", "mel")

    @property
    def per_speaker(self) -> bool:
        """True when the features are normalised per speaker, given (``speaker``) or inferred
        (``voice``): the table then names each clip's speaker (``FeatureTable.speaker_ids``), which
        the speaker-aware settings and baselines read."""
        return self.normalisation in ("speaker", "voice")

    @property
    def side_information(self) -> bool:
        """True when the features use more than the clip itself (speaker ids, ``speaker``)."""
        return self.normalisation == "speaker"

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
        """A stable hash of every field except the description (late fields only off-default)."""
        d = self.to_dict()
        d.pop("description", None)
        defaults = {f.name: f.default for f in dataclasses.fields(Preset)}
        for k in _LATE_FIELDS:
            if d[k] == defaults[k]:
                d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


PRESETS: dict[str, Preset] = {
    "audiomnist": Preset(
        name="audiomnist", sample_rate=48000, duration_s=1.0,
        win_s=0.02,  # 960 samples at 48 kHz
        hop_s=0.01,  # 480 samples
        scale="linear", n_bins=128,
        first_bin=1,  # drop DC, keep bins 1..128 = 50 Hz .. 6.4 kHz
        compression="none",
        description="UVAC paper (AudioMNIST): 48 kHz, 1 s, Hann 960 / hop 480, |STFT| bins 1..128 -> 128 x 99",
    ),
    "urban4s": Preset(
        name="urban4s", sample_rate=16000, duration_s=4.0,
        win_s=0.06,  # 960 samples at 16 kHz
        hop_s=0.03,  # 50% overlap
        scale="mel", n_bins=128, compression="log",
        description="Categorical UVAC paper (UrbanSound8K): 16 kHz, 4 s, Hann 960, 50% overlap, 128 log-mel "
                    "-> 128 x 132",
    ),
    "urban10s": Preset(
        name="urban10s", sample_rate=16000, duration_s=10.0, win_s=0.06, hop_s=0.03,
        scale="mel", n_bins=128, compression="log",
        description="Categorical UVAC paper (TAU2019): 16 kHz, 10 s, Hann 960, 50% overlap, 128 log-mel -> 128 x 332",
    ),
    "compact": Preset(
        name="compact", sample_rate=16000, duration_s=1.0, win_s=0.06, hop_s=0.03,
        scale="mel", n_bins=64, compression="log",
        description=("Small preset (not from the papers) for fast CPU studies: 16 kHz, 1 s, Hann 960 / hop 480, "
                     "64 log-mel -> 64 x 32"),
    ),
}

# The audiomnist front end with log compression (not in the papers): dense inputs instead of the
# sparse linear magnitude, everything else the same.
PRESETS["audiomnist_log"] = dataclasses.replace(
    PRESETS["audiomnist"], name="audiomnist_log", compression="log", log_eps=1e-4,
    description=("The audiomnist front end with log compression (not in the papers): log(|STFT| + 1e-4), "
                 "bins 1..128 -> 128 x 99"),
)

# Speech front ends (not in the papers; docs/MODELS.md, "Speech front ends"). 8 kHz telephone band
# (FSDD's rate; AudioMNIST is resampled), 25 ms Hann windows, 10 ms hop, activity-trimmed and
# stretched. ``awe`` is the classical acoustic-word-embedding front end of the strongest baseline
# (Kamper, Jansen and Goldwater 2016; SPEC section 8): 13 MFCCs, CMN, 10 frames.
_SPEECH = dict(sample_rate=8000, duration_s=1.0, win_s=0.025, hop_s=0.01, compression="log",
               duration_mode="stretch", trim_nats=6.0)
_MFCC = dict(_SPEECH, scale="mfcc", n_mels=40, log_eps=1e-10)
for _name, _kw, _what in (
    ("awe", dict(_MFCC, n_bins=13, stretch_frames=10, normalisation="band"),
     "13 MFCCs (c1..c13, 40 mel), trimmed, stretched to 10 frames, CMN -> 13 x 10 (the classical baseline's)"),
    ("awe_speaker", dict(_MFCC, n_bins=13, stretch_frames=10, normalisation="speaker"),
     "awe with per-speaker CMVN instead of CMN (speaker ids: side information) -> 13 x 10"),
    ("awe_voice", dict(_MFCC, n_bins=13, stretch_frames=10, normalisation="voice", voices=4),
     "awe with CMVN per inferred speaker (4 voices, no speaker ids) instead of CMN -> 13 x 10"),
    ("awe_raw", dict(_MFCC, n_bins=13, stretch_frames=10, normalisation="none"),
     "awe without any normalisation (speaker and channel offsets kept) -> 13 x 10"),
    ("mfcc_raw", dict(_MFCC, n_bins=20, stretch_frames=16, normalisation="none"),
     "20 MFCCs, trimmed, stretched to 16 frames, not normalised -> 20 x 16"),
    ("mfcc", dict(_MFCC, n_bins=20, stretch_frames=16, normalisation="band"),
     "20 MFCCs (c1..c20, 40 mel), trimmed, stretched to 16 frames, CMN -> 20 x 16"),
    ("mfcc_speaker", dict(_MFCC, n_bins=20, stretch_frames=16, normalisation="speaker"),
     "mfcc with per-speaker CMVN (speaker ids: side information) -> 20 x 16"),
    ("mfcc_voice", dict(_MFCC, n_bins=20, stretch_frames=16, normalisation="voice", voices=4),
     "mfcc with CMVN per inferred speaker (4 voices, no speaker ids) -> 20 x 16"),
    ("mfcc_clip", dict(_MFCC, n_bins=20, stretch_frames=16, normalisation="clip"),
     "mfcc with the papers' per-clip [0, 1] normalisation instead of CMN -> 20 x 16"),
    ("logmel", dict(_SPEECH, scale="mel", n_bins=40, log_eps=1e-5, stretch_frames=16, normalisation="band"),
     "40 log-mel bands, trimmed, stretched to 16 frames, CMN -> 40 x 16"),
    ("logmel_speaker", dict(_SPEECH, scale="mel", n_bins=40, log_eps=1e-5, stretch_frames=16,
                            normalisation="speaker"),
     "logmel with per-speaker CMVN (speaker ids: side information) -> 40 x 16"),
    ("logmel_voice", dict(_SPEECH, scale="mel", n_bins=40, log_eps=1e-5, stretch_frames=16,
                          normalisation="voice", voices=4),
     "logmel with CMVN per inferred speaker (4 voices, no speaker ids) -> 40 x 16"),
):
    PRESETS[_name] = Preset(name=_name, description=f"Speech front end: 8 kHz, 25 ms / 10 ms, {_what}", **_kw)

# The shapes, asserted once at import (docs/MODELS.md, "Front ends").
for _name, _shape in (("audiomnist", (128, 99)), ("audiomnist_log", (128, 99)), ("urban4s", (128, 132)),
                      ("urban10s", (128, 332)), ("compact", (64, 32)), ("awe", (13, 10)), ("mfcc", (20, 16)),
                      ("logmel", (40, 16))):
    assert PRESETS[_name].shape == _shape, (_name, PRESETS[_name].shape)


def get_preset(name: str | Preset, **overrides: Any) -> Preset:
    """A named preset, optionally with fields replaced (e.g. ``duration_s=2.0``).

    Passing a :class:`Preset` returns it (with overrides applied). ``None`` overrides are ignored.
    """
    if isinstance(name, Preset):
        base = name
    else:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
        base = PRESETS[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return base
    known = {f.name for f in dataclasses.fields(Preset)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unknown preset fields {sorted(bad)}; known: {sorted(known)}")
    return dataclasses.replace(base, **overrides)
