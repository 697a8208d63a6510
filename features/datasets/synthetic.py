"""Built-in synthetic dataset: procedural sound classes, deterministic from a seed.

Twelve sound classes are defined (the first ``n_classes``, default 10, are used), chosen to
overlap in time and frequency so that clustering them is not trivial but learnable:

======== =====================================================================
tone       steady harmonic tone, f0 150-350 Hz, speaker-dependent spectral tilt
chirp_up   harmonic glide upwards (x1.6-2.5 over the event)
chirp_down the same glide downwards
vibrato    harmonic tone with 5-8 Hz vibrato (3-7 % depth), f0 as ``tone``
am_noise   band of noise (500-3000 Hz centre) amplitude-modulated at 4-12 Hz
clicks     train of resonant clicks, 12-40 per second
vowel_a    glottal pulse train (f0 100-220 Hz) through /a/ formants (730, 1090, 2440 Hz)
vowel_i    the same through /i/ formants (270, 2290, 3010 Hz)
bell       inharmonic decaying partials (1, 2.76, 5.40, 8.93 x f0), f0 300-700 Hz
trill      harmonic tone alternating between two pitches at 4-10 Hz
noise_hits 1-4 decaying low-passed noise bursts
vowel_u    glottal pulse train through /u/ formants (300, 870, 2240 Hz)
======== =====================================================================

Each clip: one event of its class (random onset and duration, 0.3-0.85 s), background
noise at 15-35 dB SNR, with probability 0.3 a distractor event of another class 6-15 dB
lower, and a random level (peak -20..-3 dBFS). About 30 % of the clips are shorter than
``duration_s`` (0.5-0.95 of it), so that padding and masks matter. Five "speakers"
(generators ``spk0`` .. ``spk4``) shared by all classes shift pitch, formants, modulation rates
and brightness; the speaker is the record's group, so group splits hold speakers out.

:func:`ensure_synthetic` writes 16-bit PCM WAVs ``root/<class>/<speaker>/<class>-<speaker>-<i>.wav``
plus ``root/manifest.json``; the output is byte-identical for the same arguments and
generator version. Generation goes to a temporary sibling folder renamed into place at the
end, so an interrupted run never leaves a ``root`` that looks complete.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from features.datasets.base import DatasetError, DatasetScan
from features.datasets.folder import list_folder

NAME = "synthetic"
GENERATOR = "features.datasets.synthetic"
GENERATOR_VERSION = 1
MANIFEST = "manifest.json"
N_SPEAKERS = 5
DURATION_S = 1.0


# --------------------------------------------------------------------------------------
# Speakers (generators): per-seed timbre/pitch offsets shared by all classes
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speaker:
    name: str
    pitch: float  # f0 multiplier
    formant: float  # formant / band-centre multiplier
    rate: float  # modulation-rate multiplier
    tilt: float  # harmonic roll-off exponent (higher = darker)


def speakers(seed: int, n: int = N_SPEAKERS) -> list[Speaker]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7_777_777]))
    out = []
    for k in range(n):
        out.append(
            Speaker(
                name=f"spk{k}",
                pitch=float(rng.uniform(0.8, 1.25)),
                formant=float(rng.uniform(0.9, 1.1)),
                rate=float(rng.uniform(0.85, 1.15)),
                tilt=float(rng.uniform(0.8, 2.0)),
            )
        )
    return out


# --------------------------------------------------------------------------------------
# Building blocks (numpy only; all randomness from the clip's Generator)
# --------------------------------------------------------------------------------------
def _envelope(n: int, sr: int, attack_s: float, release_s: float) -> np.ndarray:
    env = np.ones(n)
    a = min(n, max(1, int(attack_s * sr)))
    r = min(n - a, max(1, int(release_s * sr))) if n > a else 0
    env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    if r > 0:
        env[n - r :] = np.linspace(1.0, 0.0, r)
    return env


def _harmonic(f0: np.ndarray, sr: int, n_harm: int, tilt: float, rng: np.random.Generator) -> np.ndarray:
    """Sum of harmonics of a time-varying f0 [n] (Hz), amplitudes k^-tilt, random phases, no aliasing."""
    phase = 2 * math.pi * np.cumsum(f0) / sr
    z = np.exp(1j * phase)
    zk = z.copy()  # e^{i k phase}, by repeated multiplication (cheaper than a sin per harmonic)
    out = np.zeros_like(f0)
    f_max = float(np.max(f0)) if f0.size else 0.0
    for k in range(1, n_harm + 1):
        if f_max * k >= 0.45 * sr:
            break
        ph = rng.uniform(0, 2 * math.pi)
        out += k ** (-tilt) * (zk.imag * math.cos(ph) + zk.real * math.sin(ph))
        zk *= z
    return out


def _shape_spectrum(x: np.ndarray, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Filter ``x`` by a zero-phase magnitude response ``gain(freq_hz)`` (FFT domain)."""
    n = x.size
    n_fft = 1 << max(1, (n - 1).bit_length())  # power of two: fast, and the same for every run
    spec = np.fft.rfft(x, n_fft)
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    return np.fft.irfft(spec * gain(f), n_fft)[:n]


def _resonances(centres: list[float], widths: list[float], amps: list[float]) -> Callable[[np.ndarray], np.ndarray]:
    def g(f: np.ndarray) -> np.ndarray:
        out = np.zeros_like(f)
        for c, w, a in zip(centres, widths, amps):
            out += a / (1.0 + ((f - c) / (w / 2)) ** 2)
        return out

    return g


def _norm(x: np.ndarray) -> np.ndarray:
    rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
    return x / rms if rms > 0 else x


# --------------------------------------------------------------------------------------
# The classes: each returns an event of n samples with unit RMS
# --------------------------------------------------------------------------------------
def _tone(rng, sr, n, spk):
    f0 = np.full(n, rng.uniform(150, 350) * spk.pitch)
    x = _harmonic(f0, sr, 8, spk.tilt, rng)
    return x * _envelope(n, sr, rng.uniform(0.01, 0.04), rng.uniform(0.03, 0.1))


def _chirp(up: bool):
    def gen(rng, sr, n, spk):
        lo = rng.uniform(150, 300) * spk.pitch
        hi = lo * rng.uniform(1.6, 2.5)
        a, b = (lo, hi) if up else (hi, lo)
        f0 = a * (b / a) ** np.linspace(0.0, 1.0, n)
        x = _harmonic(f0, sr, 4, spk.tilt, rng)
        return x * _envelope(n, sr, 0.02, 0.05)

    return gen


def _vibrato(rng, sr, n, spk):
    base = rng.uniform(150, 350) * spk.pitch
    rate = rng.uniform(5, 8) * spk.rate
    depth = rng.uniform(0.03, 0.07)
    t = np.arange(n) / sr
    f0 = base * (1 + depth * np.sin(2 * math.pi * rate * t + rng.uniform(0, 2 * math.pi)))
    x = _harmonic(f0, sr, 8, spk.tilt, rng)
    return x * _envelope(n, sr, rng.uniform(0.01, 0.04), rng.uniform(0.03, 0.1))


def _am_noise(rng, sr, n, spk):
    centre = rng.uniform(500, 3000) * spk.formant
    x = _shape_spectrum(rng.standard_normal(n), sr, _resonances([centre], [0.5 * centre], [1.0]))
    rate = rng.uniform(4, 12) * spk.rate
    t = np.arange(n) / sr
    am = 1 - 0.8 * (0.5 + 0.5 * np.sin(2 * math.pi * rate * t + rng.uniform(0, 2 * math.pi)))
    return x * am * _envelope(n, sr, 0.02, 0.05)


def _clicks(rng, sr, n, spk):
    rate = rng.uniform(12, 40) * spk.rate
    period = sr / rate
    x = np.zeros(n)
    pos = rng.uniform(0, period)
    while pos < n:
        x[int(pos)] = rng.uniform(0.6, 1.0)
        pos += period * rng.uniform(0.9, 1.1)
    res = rng.uniform(1000, 4000) * spk.formant
    x = _shape_spectrum(x, sr, _resonances([res], [0.3 * res], [1.0]))
    return x


def _vowel(formants: tuple[float, float, float]):
    def gen(rng, sr, n, spk):
        base = rng.uniform(100, 220) * spk.pitch
        t = np.arange(n) / sr
        f0 = base * (1 + 0.02 * np.sin(2 * math.pi * rng.uniform(3, 5) * t))
        src = _harmonic(f0, sr, 40, 1.0, rng)  # glottal-like source, -6 dB/octave
        fs = [f * spk.formant * rng.uniform(0.95, 1.05) for f in formants]
        x = _shape_spectrum(src, sr, _resonances(fs, [90, 120, 160], [1.0, 0.6, 0.3]))
        return x * _envelope(n, sr, rng.uniform(0.02, 0.06), rng.uniform(0.05, 0.12))

    return gen


def _bell(rng, sr, n, spk):
    f0 = rng.uniform(300, 700) * spk.pitch
    t = np.arange(n) / sr
    tau = rng.uniform(0.1, 0.4)
    x = np.zeros(n)
    for k, ratio in enumerate((1.0, 2.76, 5.40, 8.93)):
        if f0 * ratio < 0.45 * sr:
            x += ((k + 1) ** (-0.5 * spk.tilt) * np.sin(2 * math.pi * f0 * ratio * t + rng.uniform(0, 2 * math.pi))
                  * np.exp(-t * (1 + 0.5 * k) / tau))
    return x * _envelope(n, sr, 0.002, 0.02)


def _trill(rng, sr, n, spk):
    lo = rng.uniform(150, 350) * spk.pitch
    hi = lo * rng.uniform(1.2, 1.5)
    rate = rng.uniform(4, 10) * spk.rate
    t = np.arange(n) / sr
    sq = np.tanh(8 * np.sin(2 * math.pi * rate * t + rng.uniform(0, 2 * math.pi)))  # smooth square
    f0 = lo + (hi - lo) * (0.5 + 0.5 * sq)
    x = _harmonic(f0, sr, 6, spk.tilt, rng)
    return x * _envelope(n, sr, 0.02, 0.05)


def _noise_hits(rng, sr, n, spk):
    x = np.zeros(n)
    t = np.arange(n) / sr
    for _ in range(int(rng.integers(1, 5))):
        start = int(rng.uniform(0, 0.7) * n)
        tau = rng.uniform(0.02, 0.08)
        seg = np.exp(-(t[: n - start]) / tau) * rng.standard_normal(n - start)
        x[start:] += rng.uniform(0.5, 1.0) * seg
    cut = rng.uniform(1500, 6000) * spk.formant
    return _shape_spectrum(x, sr, lambda f: 1.0 / (1.0 + (f / cut) ** 4))


CLASSES: list[tuple[str, Callable]] = [
    ("tone", _tone),
    ("chirp_up", _chirp(True)),
    ("chirp_down", _chirp(False)),
    ("vibrato", _vibrato),
    ("am_noise", _am_noise),
    ("clicks", _clicks),
    ("vowel_a", _vowel((730.0, 1090.0, 2440.0))),
    ("vowel_i", _vowel((270.0, 2290.0, 3010.0))),
    ("bell", _bell),
    ("trill", _trill),
    ("noise_hits", _noise_hits),
    ("vowel_u", _vowel((300.0, 870.0, 2240.0))),
]
MAX_CLASSES = len(CLASSES)
CLASS_NAMES = tuple(name for name, _ in CLASSES)


def class_names(n_classes: int = 10) -> list[str]:
    _check_sizes(n_classes, 1, 16000)
    return [name for name, _ in CLASSES[:n_classes]]


def _check_sizes(n_classes: int, n_per_class: int, sample_rate: int) -> None:
    if not 2 <= int(n_classes) <= MAX_CLASSES:
        raise ValueError(f"synthetic: n_classes must be in 2..{MAX_CLASSES}, got {n_classes}")
    if int(n_per_class) < 1:
        raise ValueError(f"synthetic: n_per_class must be >= 1, got {n_per_class}")
    if int(sample_rate) < 8000:
        raise ValueError(f"synthetic: sample_rate must be >= 8000 Hz, got {sample_rate}")


# --------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------
def generate_clip(
    seed: int, class_index: int, clip_index: int, n_classes: int = 10, sample_rate: int = 16000
) -> tuple[np.ndarray, str]:
    """The waveform (float64, in [-1, 1]) and speaker name of one clip; pure function of its arguments."""
    sr = int(sample_rate)
    spk = speakers(seed)[clip_index % N_SPEAKERS]
    rng = np.random.default_rng(np.random.SeedSequence([seed, class_index, clip_index, GENERATOR_VERSION]))
    full = int(round(DURATION_S * sr))
    length = full if rng.random() >= 0.3 else int(full * rng.uniform(0.5, 0.95))

    # background: brown-ish noise (white noise through a gentle low-pass)
    bg = _shape_spectrum(rng.standard_normal(length), sr, lambda f: 1.0 / np.sqrt(1.0 + (f / 800.0) ** 2))
    bg = _norm(bg)

    # main event
    ev_len = min(length, int(rng.uniform(0.3, 0.85) * full))
    onset = int(rng.integers(0, length - ev_len + 1))
    event = _norm(CLASSES[class_index][1](rng, sr, ev_len, spk))
    x = np.zeros(length)
    x[onset : onset + ev_len] += event
    snr_db = rng.uniform(15, 35)
    x += bg * 10 ** (-snr_db / 20)

    # occasional distractor from another class, 6-15 dB lower
    if rng.random() < 0.3:
        other = int(rng.integers(0, n_classes - 1))
        other += other >= class_index
        d_len = min(length, int(rng.uniform(0.15, 0.5) * full))
        d_on = int(rng.integers(0, length - d_len + 1))
        d = _norm(CLASSES[other][1](rng, sr, d_len, spk))
        x[d_on : d_on + d_len] += d * 10 ** (-rng.uniform(6, 15) / 20)

    peak = float(np.max(np.abs(x)))
    level = 10 ** (rng.uniform(-20, -3) / 20)
    x = x * (level / peak) if peak > 0 else x
    return x, spk.name


def _wav_bytes(x: np.ndarray, sr: int) -> bytes:
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# Materialise on disk
# --------------------------------------------------------------------------------------
def _params(seed: int, n_per_class: int, n_classes: int, sample_rate: int) -> dict:
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_classes": int(n_classes),
        "n_per_class": int(n_per_class),
        "n_speakers": N_SPEAKERS,
        "sample_rate": int(sample_rate),
        "duration_s": DURATION_S,
        "classes": class_names(n_classes),
    }


def _read_manifest(root: Path) -> dict | None:
    try:
        m = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def _complete(root: Path, params: dict) -> bool:
    m = _read_manifest(root)
    if m is None or any(m.get(k) != v for k, v in params.items()):
        return False
    files = m.get("files")
    if not isinstance(files, dict) or len(files) != params["n_classes"] * params["n_per_class"]:
        return False
    for rel, size in files.items():
        try:
            if (root / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _clean_stale_temps(root: Path) -> None:
    """Remove temp folders of interrupted generations (their process is gone)."""
    for p in root.parent.glob(f".{root.name}.tmp-*"):
        try:
            pid = int(p.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _generate_into(tmp: Path, params: dict) -> None:
    seed, n_classes, n_per_class, sr = params["seed"], params["n_classes"], params["n_per_class"], params["sample_rate"]
    files: dict[str, int] = {}
    digest = hashlib.sha256()
    for ci, cname in enumerate(params["classes"]):
        for i in range(n_per_class):
            x, spk = generate_clip(seed, ci, i, n_classes, sr)
            rel = f"{cname}/{spk}/{cname}-{spk}-{i:03d}.wav"
            data = _wav_bytes(x, sr)
            (tmp / cname / spk).mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
            files[rel] = len(data)
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    manifest = dict(params, n_files=len(files), content_sha256=digest.hexdigest(), files=files)
    # the manifest is written last: a folder without it is never taken for complete
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def ensure_synthetic(
    root: Path | str, seed: int = 0, n_per_class: int = 50, n_classes: int = 10, sample_rate: int = 16000
) -> Path:
    """Materialise the synthetic dataset under ``root`` (once) and return ``root``.

    Nothing is regenerated when ``root/manifest.json`` matches the arguments and the generator
    version and every listed file is there with its size. A ``root`` holding another synthetic
    set (other seed or sizes) is replaced; a non-empty ``root`` that is not a synthetic set
    raises :class:`DatasetError` rather than being overwritten.
    """
    _check_sizes(n_classes, n_per_class, sample_rate)
    root = Path(root).expanduser().absolute()
    params = _params(seed, n_per_class, n_classes, sample_rate)
    if _complete(root, params):
        return root
    if root.exists():
        if not root.is_dir():
            raise DatasetError(f"{NAME}: {root} exists and is not a directory")
        old = _read_manifest(root)
        if any(root.iterdir()) and (old is None or old.get("generator") != GENERATOR):
            raise DatasetError(
                f"{NAME}: {root} is not empty and holds no synthetic {MANIFEST}; refusing to overwrite it "
                "(choose an empty or new folder)"
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(root)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _generate_into(tmp, params)
        trash = None
        if root.exists():
            if _complete(root, params):  # another process finished first
                return root
            trash = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(root, trash)
        try:
            os.replace(tmp, root)
        except OSError:
            if _complete(root, params):  # lost a race with a concurrent generation
                return root
            raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def scan(
    root: Path | str, seed: int = 0, n_per_class: int = 50, n_classes: int = 10, sample_rate: int = 16000, **_opts
) -> DatasetScan:
    """Ensure the synthetic set under ``root`` and list it like a folder dataset
    (label = class, group = speaker ``spk0`` .. ``spk4``)."""
    ensure_synthetic(root, seed=seed, n_per_class=n_per_class, n_classes=n_classes, sample_rate=sample_rate)
    return list_folder(root, NAME)
