"""features.audio: decoding, resampling, cropping and every reject reason."""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from features import audio
from features.audio import AudioRejected, DecodedClip, check_wav_chunks, load_audio
from tests import audio_factory as af


def _dominant_hz(x: torch.Tensor, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.numpy() * np.hanning(x.numel())))
    return float(np.fft.rfftfreq(x.numel(), 1.0 / rate)[int(np.argmax(spec))])


# ---------------------------------------------------------------------------------------
# Bad inputs: each has its own reason
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(af.BROKEN))
def test_broken_file_gives_its_reason(tmp_path, kind):
    writer, reason = af.broken_writers()[kind]
    path = writer(tmp_path / f"{kind}.wav")
    with pytest.raises(AudioRejected) as ei:
        load_audio(path, 16000, 1.0)
    assert ei.value.reason == reason
    assert reason in audio.REASONS
    assert "\n" not in str(ei.value)


def test_all_reasons_are_distinct():
    assert len(set(audio.REASONS)) == len(audio.REASONS)
    assert len({r for _, r in af.broken_writers().values()}) == len(af.BROKEN)


def test_inf_samples_rejected(tmp_path):
    p = af.write_nan_wav(tmp_path / "inf.wav", value=float("inf"))
    with pytest.raises(AudioRejected) as ei:
        load_audio(p, 16000, 1.0)
    assert ei.value.reason == audio.REASON_NONFINITE


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(AudioRejected) as ei:
        load_audio(tmp_path / "nope.wav", 16000, 1.0)
    assert ei.value.reason == audio.REASON_UNREADABLE


def test_text_file_with_other_suffix_is_undecodable(tmp_path):
    p = tmp_path / "notes.flac"
    p.write_text("hello", encoding="utf-8")
    with pytest.raises(AudioRejected) as ei:
        load_audio(p, 16000, 1.0)
    assert ei.value.reason == audio.REASON_UNDECODABLE


def test_truncated_header_only(tmp_path):
    """A WAV cut inside its header: no complete data chunk."""
    p = af.write_tone(tmp_path / "t.wav")
    p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(AudioRejected) as ei:
        load_audio(p, 16000, 1.0)
    assert ei.value.reason == audio.REASON_TRUNCATED


def test_truncated_by_one_byte(tmp_path):
    p = af.write_tone(tmp_path / "t.wav", duration_s=0.2)
    p.write_bytes(p.read_bytes()[:-1])
    assert check_wav_chunks(p) is not None
    with pytest.raises(AudioRejected) as ei:
        load_audio(p, 16000, 1.0)
    assert ei.value.reason == audio.REASON_TRUNCATED
    assert "declares" in ei.value.detail


def _riff(chunks: list[tuple[bytes, bytes]], data_size: int | None = None, payload: bytes = b"") -> bytes:
    body = b"WAVE"
    for cid, cbody in chunks:
        body += cid + struct.pack("<I", len(cbody)) + cbody + (b"\0" if len(cbody) % 2 else b"")
    body += b"data" + struct.pack("<I", len(payload) if data_size is None else data_size) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _fmt_pcm16(rate: int = 16000) -> bytes:
    return struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)


def test_odd_sized_chunk_before_data_is_walked(tmp_path):
    pcm = (af.tone(1600, 16000)[:, 0] * 32767).astype("<i2").tobytes()
    p = tmp_path / "odd.wav"
    p.write_bytes(_riff([(b"fmt ", _fmt_pcm16()), (b"LIST", b"abc")], payload=pcm))
    assert check_wav_chunks(p) is None
    clip = load_audio(p, 16000, 1.0)
    assert clip.waveform.numel() == 1600


def test_streamed_wav_of_unknown_length_is_accepted(tmp_path):
    pcm = (af.tone(1600, 16000)[:, 0] * 32767).astype("<i2").tobytes()
    p = tmp_path / "stream.wav"
    p.write_bytes(_riff([(b"fmt ", _fmt_pcm16())], data_size=0xFFFFFFFF, payload=pcm))
    assert check_wav_chunks(p) is None


def test_non_riff_is_left_to_the_decoder(tmp_path):
    p = af.write_text_as_wav(tmp_path / "x.wav")
    assert check_wav_chunks(p) is None


def test_silence_threshold(tmp_path):
    # digital silence with float noise far below -100 dBFS: silent
    n = 8000
    p = tmp_path / "quiet_float.wav"
    sf.write(str(p), (1e-7 * np.random.default_rng(0).standard_normal(n)).astype(np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioRejected) as ei:
        load_audio(p, 16000, 1.0)
    assert ei.value.reason == audio.REASON_SILENT
    # a very quiet but real signal (-80 dBFS) is kept
    p2 = af.write_tone(tmp_path / "quiet.wav", subtype="FLOAT", amplitude=1e-4)
    clip = load_audio(p2, 16000, 1.0)
    assert torch.isfinite(clip.waveform).all()
    assert 0 < clip.waveform.abs().max() < 2e-4


def test_stereo_that_cancels_is_silent(tmp_path):
    x = af.tone(8000, 16000)[:, :1]
    p = tmp_path / "cancel.wav"
    sf.write(str(p), np.concatenate([x, -x], axis=1), 16000, subtype="FLOAT")
    with pytest.raises(AudioRejected) as ei:
        load_audio(p, 16000, 1.0)
    assert ei.value.reason == audio.REASON_SILENT


def test_rejection_pickles_with_its_reason():
    e = AudioRejected(audio.REASON_TRUNCATED, "data chunk declares 10 bytes")
    e2 = pickle.loads(pickle.dumps(e))
    assert e2.reason == e.reason and e2.detail == e.detail and str(e2) == str(e)


# ---------------------------------------------------------------------------------------
# Accepted formats, resampling, crop
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("rate", [8000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_formats_are_decoded_and_resampled(tmp_path, subtype, rate, channels):
    p = af.write_tone(tmp_path / "t.wav", sample_rate=rate, duration_s=0.5, freq=440.0, channels=channels,
                      subtype=subtype)
    clip = load_audio(p, 16000, 1.0)
    assert isinstance(clip, DecodedClip)
    assert clip.waveform.dtype == torch.float32 and clip.waveform.dim() == 1
    assert clip.waveform.numel() == 8000  # 0.5 s at 16 kHz, not padded
    assert clip.sample_rate == 16000 and clip.source_sample_rate == rate
    assert clip.source_frames == int(round(0.5 * rate))
    assert clip.source_duration_s == pytest.approx(0.5, abs=1e-4)
    assert clip.cropped is False
    assert abs(_dominant_hz(clip.waveform, 16000) - 440.0) < 5.0
    assert 0.1 < float(clip.waveform.abs().max()) <= 1.0


@pytest.mark.parametrize("target,length", [(8000, 4000), (16000, 8000), (48000, 24000)])
def test_resampled_length(tmp_path, target, length):
    p = af.write_tone(tmp_path / "t.wav", sample_rate=44100, duration_s=0.5)
    assert load_audio(p, target, 1.0).waveform.numel() == length


def test_stereo_is_the_mean_of_channels(tmp_path):
    x = af.tone(4000, 16000)[:, 0]
    p = tmp_path / "lr.wav"
    sf.write(str(p), np.stack([x, np.zeros_like(x)], axis=1), 16000, subtype="FLOAT")
    clip = load_audio(p, 16000, 1.0)
    np.testing.assert_allclose(clip.waveform.numpy(), (x / 2).astype(np.float32), atol=1e-6)


@pytest.mark.parametrize("suffix,subtype", [(".flac", "PCM_16"), (".ogg", "VORBIS")])
def test_flac_and_ogg(tmp_path, suffix, subtype):
    p = af.write_tone(tmp_path / f"t{suffix}", sample_rate=22050, duration_s=0.5, subtype=subtype)
    clip = load_audio(p, 16000, 1.0)
    assert clip.waveform.numel() == 8000
    assert abs(_dominant_hz(clip.waveform, 16000) - 440.0) < 5.0


def test_long_clip_keeps_its_first_seconds(tmp_path):
    p = af.write_too_long_wav(tmp_path / "long.wav", sample_rate=16000, duration_s=3.0)
    clip = load_audio(p, 16000, 1.0)
    assert clip.cropped is True
    assert clip.waveform.numel() == 16000
    assert clip.source_frames == 48000 and clip.source_duration_s == pytest.approx(3.0)
    first, _ = sf.read(str(p), frames=16000, dtype="float32")
    np.testing.assert_array_equal(clip.waveform.numpy(), first)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_long_clip_cropped_at_any_rate(tmp_path, rate):
    p = af.write_too_long_wav(tmp_path / "long.wav", sample_rate=rate, duration_s=1.7)
    clip = load_audio(p, 16000, 1.0)
    assert clip.cropped is True and clip.waveform.numel() == 16000


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_exact_length_is_not_cropped(tmp_path, rate):
    p = af.write_tone(tmp_path / "one.wav", sample_rate=rate, duration_s=1.0)
    for target in (16000, 48000):
        clip = load_audio(p, target, 1.0)
        assert clip.cropped is False
        assert clip.waveform.numel() == target


def test_custom_time_context(tmp_path):
    p = af.write_tone(tmp_path / "t.wav", sample_rate=16000, duration_s=5.0)
    clip = load_audio(p, 16000, 4.0)
    assert clip.cropped and clip.waveform.numel() == 64000
    clip = load_audio(p, 16000, 10.0)
    assert not clip.cropped and clip.waveform.numel() == 80000


def test_one_frame_file(tmp_path):
    p = tmp_path / "one.wav"
    sf.write(str(p), np.array([[0.5]], dtype=np.float32), 8000, subtype="PCM_16")
    clip = load_audio(p, 48000, 1.0)
    assert 1 <= clip.waveform.numel() <= 6
    assert torch.isfinite(clip.waveform).all()


def test_bad_arguments(tmp_path):
    p = af.write_tone(tmp_path / "t.wav")
    with pytest.raises(ValueError):
        load_audio(p, 0, 1.0)
    with pytest.raises(ValueError):
        load_audio(p, 16000, 0.0)
