"""Speech front ends: MFCC cepstra, activity trimming + stretching, CMN and per-speaker CMVN."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio

from features.datasets.base import AudioRecord, DatasetScan
from features.builder import build_cache
from features.frontend import compute_features, get_preset, spectral_frames
from features.normalise import normalise_band, normalise_speakers
from features.timeaxis import active_span, resample_frames
from tests import audio_factory as af


def _burst(rate: int, silence_s: float, tone_s: float, freq: float = 500.0) -> torch.Tensor:
    """silence, a tone, silence again (a word with leading and trailing silence)."""
    n_sil, n_tone = int(silence_s * rate), int(tone_s * rate)
    t = torch.arange(n_tone) / rate
    tone = 0.3 * torch.sin(2 * math.pi * freq * t) * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t))
    return torch.cat([torch.zeros(n_sil), tone, torch.zeros(n_sil)]) + 1e-5 * torch.randn(
        2 * n_sil + n_tone, generator=torch.Generator().manual_seed(0))


def test_mfcc_are_the_dct_of_the_log_mel_power():
    p = get_preset("mfcc", normalisation="speaker")  # stored un-normalised: compare raw cepstra
    w = _burst(p.sample_rate, 0.0, 0.5)
    s, energy, mask = spectral_frames(w, p)
    spec = torchaudio.transforms.Spectrogram(n_fft=p.n_fft, hop_length=p.hop, power=2.0, center=False)(w)
    mel = torchaudio.transforms.MelScale(n_mels=p.n_mels, sample_rate=p.sample_rate, n_stft=p.n_fft // 2 + 1)(spec)
    log_mel = torch.log(mel + p.log_eps)
    dct = torchaudio.functional.create_dct(p.n_bins + 1, p.n_mels, norm="ortho")  # [n_mels, n_bins + 1]
    expected = (log_mel.T @ dct).T[1:]  # c1..c20, c0 dropped
    assert s.shape == (20, expected.shape[1]) and torch.allclose(s, expected, atol=1e-3)
    assert torch.allclose(energy, log_mel.mean(0), atol=1e-5) and torch.all(mask == 1)


def test_stretch_maps_the_trimmed_activity_to_exactly_n_frames():
    p = get_preset("logmel", normalisation="speaker")  # un-normalised, so the values can be compared
    w = _burst(p.sample_rate, 0.2, 0.4)
    s, energy, _ = spectral_frames(w, p)
    start, stop = active_span(energy, p.trim_nats)
    # the kept span is the tone (0.2 .. 0.6 s), give or take the frames that straddle its edges
    assert abs(start * p.hop_s - 0.2) <= 2 * p.win_s and abs(stop * p.hop_s - 0.6) <= 2 * p.win_s
    feats = compute_features(w, p)
    assert feats.spectrogram.shape == (40, p.stretch_frames) and torch.all(feats.mask == 1)
    assert torch.allclose(feats.spectrogram, resample_frames(s[:, start:stop], p.stretch_frames), atol=1e-5)
    # the same word with twice the silence around it gives the same features: silence is gone
    longer = compute_features(_burst(p.sample_rate, 0.3, 0.4), p)
    # (up to the frame grid: the edges of the span fall on other samples)
    assert float((longer.spectrogram - feats.spectrogram).norm()) < 0.1 * float(feats.spectrogram.norm())


def test_stretch_removes_duration():
    """A word spoken twice as slowly (same pitch) lands on the same frames once stretched."""
    p = get_preset("mfcc")
    fast = compute_features(_burst(p.sample_rate, 0.1, 0.3), p).spectrogram
    slow_w = _burst(p.sample_rate, 0.1, 0.6)
    slow = compute_features(slow_w, p).spectrogram
    other = compute_features(_burst(p.sample_rate, 0.1, 0.3, freq=1500.0), p).spectrogram
    assert float((fast - slow).norm()) < 0.5 * float((fast - other).norm())


def test_resample_frames_is_linear_interpolation_with_fixed_ends():
    s = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    out = resample_frames(s, 7)
    assert torch.allclose(out, torch.tensor([[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]]))
    assert torch.equal(resample_frames(torch.tensor([[4.0]]), 3), torch.tensor([[4.0, 4.0, 4.0]]))


def test_cmn_gives_every_band_zero_mean_over_real_frames_only():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(5, 8, generator=g) + torch.arange(5.0)[:, None] * 10  # band offsets
    mask = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.float32)
    x = normalise_band(s, mask)
    assert float(x[:, :6].mean(1).abs().max()) < 1e-6 and torch.all(x[:, 6:] == 0)
    assert torch.allclose(x[:, :6], s[:, :6] - s[:, :6].mean(1, keepdim=True), atol=1e-5)


def test_speaker_cmvn_standardises_each_band_of_each_speaker():
    g = torch.Generator().manual_seed(2)
    n, f, t = 12, 4, 6
    groups = np.array(["a", "b", "c"] * 4)
    offset = torch.tensor([[0.0], [5.0], [-3.0]])[torch.as_tensor([0, 1, 2] * 4)]  # per-speaker channel
    spec = torch.randn(n, f, t, generator=g) * torch.tensor([1.0, 2.0, 3.0, 4.0])[None, :, None] + offset[:, :, None]
    mask = torch.ones(n, t)
    mask[0, 4:] = 0  # padding frames are excluded and stay 0
    out = normalise_speakers(spec, mask, groups)
    for spk in "abc":
        rows = np.flatnonzero(groups == spk)
        vals = torch.cat([out[r][:, mask[r] > 0] for r in rows], dim=1).double()  # [F, real frames]
        assert float(vals.mean(1).abs().max()) < 1e-5
        assert float((vals.std(1, unbiased=False) - 1).abs().max()) < 1e-5
    assert torch.all(out[0][:, 4:] == 0)


def test_speaker_normalisation_is_refused_where_groups_are_not_speakers(tmp_path):
    recs = [AudioRecord(f"c{k}", af.write_tone(tmp_path / f"c{k}.wav", 8000, 0.3, 300.0 * (k + 1)), "x", "fold1")
            for k in range(2)]
    with pytest.raises(ValueError, match="not speakers"):
        build_cache(DatasetScan("urbansound8k", tmp_path, recs, []), get_preset("awe_speaker"), tmp_path / "out",
                    progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


def test_presets_of_the_papers_keep_their_digests():
    """Adding the speech fields left the papers' presets (and their cache directories) unchanged."""
    # the digests main had before the speech front ends existed
    assert get_preset("audiomnist").digest() == "0a19eac8cf774dbe"
    assert get_preset("compact").digest() == "7d8e556a848aaa6e"
    p = get_preset("compact")
    assert p.digest() != get_preset("compact", normalisation="band").digest()
    assert p.digest() == get_preset("compact", trim_nats=6.0).digest()  # a late field at its default


def test_preset_validation_names_the_problem():
    with pytest.raises(ValueError, match="stretch_frames"):
        get_preset("logmel", stretch_frames=1)
    with pytest.raises(ValueError, match="n_mels > n_bins"):
        get_preset("mfcc", n_bins=40)
    with pytest.raises(ValueError, match="normalisation must be one of"):
        get_preset("mfcc", normalisation="global")
    with pytest.raises(ValueError, match="cannot be de-normalised"):
        from features.frontend import denormalise
        denormalise(torch.zeros(20, 16), torch.zeros(4), get_preset("mfcc"))
