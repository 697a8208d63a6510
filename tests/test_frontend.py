"""Front ends: paper shapes, resampling, masks, normalisation and its exact inverse."""
from __future__ import annotations

import math

import pytest
import torch

from features.frontend import PRESETS, compute_features, denormalise, get_preset, linear_spectrogram


def _tone(n: int, rate: int, freq: float = 440.0, amp: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / rate
    return amp * torch.sin(2 * math.pi * freq * t) + 0.01 * torch.randn(n, generator=g)


@pytest.mark.parametrize(
    "name,shape", [("audiomnist", (128, 99)), ("urban4s", (128, 132)), ("urban10s", (128, 332)), ("compact", (64, 32))]
)
def test_preset_shapes(name, shape):
    p = get_preset(name)
    assert p.shape == shape
    feats = compute_features(_tone(p.n_samples // 2, p.sample_rate), p)
    assert tuple(feats.spectrogram.shape) == shape
    assert tuple(feats.mask.shape) == (shape[1],)
    assert tuple(feats.norm_stats.shape) == (4,)
    assert feats.spectrogram.dtype == torch.float32


def test_audiomnist_is_48k_with_paper_bins():
    p = get_preset("audiomnist")
    assert (p.sample_rate, p.n_fft, p.hop, p.first_bin, p.center) == (48000, 960, 480, 1, False)
    assert p.bin_hz == 50.0
    assert p.first_bin * p.bin_hz == 50.0 and (p.first_bin + p.n_bins - 1) * p.bin_hz == 6400.0


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_audiomnist_from_other_rates_is_128x99(rate):
    p = get_preset("audiomnist")
    w = _tone(int(0.5 * rate), rate, freq=1000.0)
    feats = compute_features(w, p, sample_rate=rate)
    assert tuple(feats.spectrogram.shape) == (128, 99)
    # the 1 kHz tone lands in bin 20 (50 Hz bins) -> row 19 after dropping DC
    real = feats.mask > 0
    assert int(feats.spectrogram[:, real].mean(1).argmax()) == 19


def test_mask_marks_frames_with_real_audio():
    p = get_preset("audiomnist")
    n = 24000  # 0.5 s at 48 kHz: frames starting before sample 24000 contain audio
    feats = compute_features(_tone(n, p.sample_rate), p)
    expected = (torch.arange(99) * 480 < n).float()
    assert torch.equal(feats.mask, expected)
    assert int(feats.mask.sum()) == 50
    assert torch.all(feats.spectrogram[:, feats.mask == 0] == 0)
    full = compute_features(_tone(p.n_samples, p.sample_rate), p)
    assert torch.all(full.mask == 1)


CLIP_PRESETS = sorted(n for n, p in PRESETS.items() if p.normalisation == "clip")
INVERTIBLE_PRESETS = sorted(n for n, p in PRESETS.items() if p.invertible)


@pytest.mark.parametrize("name", CLIP_PRESETS)
def test_normalised_to_unit_range_over_real_frames(name):
    p = get_preset(name)
    feats = compute_features(_tone(p.n_samples // 3, p.sample_rate, seed=1), p)
    real = feats.spectrogram[:, feats.mask > 0]
    assert float(real.min()) == 0.0 and float(real.max()) == 1.0
    mean, std, zmin, zmax = feats.norm_stats.tolist()
    assert std > 0 and zmax > zmin


@pytest.mark.parametrize("name", INVERTIBLE_PRESETS)
def test_denormalise_recovers_linear_magnitude(name):
    p = get_preset(name)
    w = _tone(int(p.n_samples * 0.7), p.sample_rate, seed=2)
    lin, mask = linear_spectrogram(w, p)
    feats = compute_features(w, p)
    real = mask > 0
    back = denormalise(feats.spectrogram, feats.norm_stats, p)
    assert back.shape == lin.shape
    # float32 storage: tight; relative to the clip's peak
    err = (back[:, real] - lin[:, real]).abs().max() / lin[:, real].max()
    assert err < 1e-4, err
    # float16 storage (what the cache holds): still close; batched call
    x16 = feats.spectrogram.half().unsqueeze(0).repeat(2, 1, 1)
    back16 = denormalise(x16, feats.norm_stats.unsqueeze(0).repeat(2, 1), p)
    assert back16.dtype == torch.float32 and back16.shape == (2, *lin.shape)
    rel = (back16[0][:, real] - lin[:, real]).abs() / (lin[:, real] + lin[:, real].max() * 1e-2)
    assert float(rel.max()) < 0.05
    assert torch.all(back16 >= 0)


def test_denormalise_is_differentiable():
    p = get_preset("compact")
    feats = compute_features(_tone(p.n_samples, p.sample_rate), p)
    x = feats.spectrogram.unsqueeze(0).clone().requires_grad_(True)
    denormalise(x, feats.norm_stats.unsqueeze(0), p).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_constant_and_silent_clips_do_not_divide_by_zero():
    p = get_preset("audiomnist")
    for w in (torch.zeros(20000), torch.full((20000,), 0.5)):
        feats = compute_features(w, p)
        assert torch.isfinite(feats.spectrogram).all() and torch.isfinite(feats.norm_stats).all()
        assert float(feats.norm_stats[1]) > 0 and float(feats.norm_stats[3] - feats.norm_stats[2]) > 0


def test_bad_inputs_raise_clear_errors():
    p = get_preset("compact")
    with pytest.raises(ValueError, match="crop"):
        compute_features(torch.zeros(p.n_samples + 1), p)
    with pytest.raises(ValueError, match="empty"):
        compute_features(torch.zeros(0), p)
    with pytest.raises(ValueError, match="mono"):
        compute_features(torch.zeros(2, 100), p)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ValueError, match="whole number"):
        get_preset("audiomnist", win_s=0.0201)
    with pytest.raises(ValueError, match="denormalise expects"):
        denormalise(torch.zeros(2, 64, 32), torch.zeros(3, 4), p)


def test_overrides_keep_seconds():
    p = get_preset("audiomnist", sample_rate=16000)
    assert (p.n_fft, p.hop) == (320, 160)  # 20 ms / 10 ms at 16 kHz
    q = get_preset("urban4s", duration_s=2.0)
    assert q.shape == (128, (32000 - 960) // 480 + 1)
    assert get_preset("urban4s", duration_s=None) is PRESETS["urban4s"]
    assert q.digest() != PRESETS["urban4s"].digest()
    assert type(q).from_json(q.to_json()) == q
