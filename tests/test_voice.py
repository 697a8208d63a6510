"""The ``voice`` normalisation (features.voice): each clip's voice profile, the clips clustered into
voices, per-voice CMVN on load, and the inferred speakers read by the speaker-aware settings and
baselines in place of speaker ids."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from features.cache import build_cache, load_table
from features.datasets.base import AudioRecord, DatasetScan
from features.frontend import PRESETS, compute_features, get_preset
from features.table import FeatureTable
from features.voice import VOICE_BANDS, VoiceError, VoiceModel, _mel, fit_voices, voice_profile
from tests import audio_factory as af
from trainables.config import ConfigError, check_frontend, resolve_config

AWE_VOICE = PRESETS["awe_voice"]


def _voiced(freq: float, n: int = 6000, rate: int = 8000, seed: int = 0) -> torch.Tensor:
    """A buzz at ``freq`` (harmonics falling off) with a little noise: a crude voice."""
    t = torch.arange(n) / rate
    x = sum((0.6 ** h) * torch.sin(2 * torch.pi * freq * (h + 1) * t) for h in range(8))
    return 0.3 * x + 0.003 * torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_a_voice_profile_is_the_log_mel_power_of_the_loudest_frames():
    x = _voiced(150.0)
    p = voice_profile(x, AWE_VOICE)
    assert tuple(p.shape) == (VOICE_BANDS,) and p.dtype == torch.float32 and torch.isfinite(p).all()
    # a gain is a constant shift of the log power in every band
    shift = voice_profile(2.0 * x, AWE_VOICE) - p
    assert float((shift - 2 * np.log(2.0)).abs().max()) < 1e-3
    # silence and quiet noise around the clip are not part of the profile
    quiet = 1e-4 * torch.randn(4000, generator=torch.Generator().manual_seed(1))
    padded = voice_profile(torch.cat([quiet, x, quiet]), AWE_VOICE)
    assert float((padded - p).abs().max()) < 0.3  # frame edges move a little
    every_frame = torch.log(_mel(AWE_VOICE.sample_rate, AWE_VOICE.n_fft, AWE_VOICE.hop)(
        torch.cat([quiet, x, quiet])) + 1e-10).mean(1)
    assert float((every_frame - p).abs().max()) > 3.0  # what the profile would be without choosing frames
    # another voice is another profile
    assert float((voice_profile(_voiced(320.0), AWE_VOICE) - p).abs().max()) > 1.0
    # every clip of every preset gets one; a clip shorter than a window too
    assert torch.equal(compute_features(x, AWE_VOICE).voice, p)
    assert torch.isfinite(voice_profile(x[:50], AWE_VOICE)).all()


def test_inferred_voices_recover_planted_speakers_deterministically():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, VOICE_BANDS)) * 3
    who = np.repeat(np.arange(4), 30)
    rng.shuffle(who)
    profiles = centres[who] + rng.normal(size=(len(who), VOICE_BANDS))
    voices = fit_voices(profiles, 4)[1]
    assert voices.shape == who.shape and voices[0] == "v0"  # named by first appearance
    for v in np.unique(voices):  # one voice per speaker, one speaker per voice
        assert len(np.unique(who[voices == v])) == 1
    assert len(np.unique(voices)) == 4
    assert np.array_equal(fit_voices(profiles, 4)[1], voices)
    assert np.array_equal(fit_voices(torch.tensor(profiles), 4)[1], voices)
    # the fitted model assigns the clips as the fit did, also after a JSON round trip, and a new
    # clip near a speaker's centre to that speaker's voice
    model, labels = fit_voices(profiles, 4)
    assert np.array_equal(labels, voices) and np.array_equal(model.assign(profiles), voices)
    again = VoiceModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.array_equal(again.assign(profiles), voices)
    new = centres[who[0]] + 0.1 * rng.normal(size=VOICE_BANDS)
    assert list(again.assign(new)) == [voices[0]]


def test_too_few_clips_for_the_voices_is_a_clear_error():
    with pytest.raises(VoiceError, match="cannot cluster 7 clips into 4 voices"):
        fit_voices(np.random.default_rng(0).normal(size=(7, VOICE_BANDS)), 4)
    with pytest.raises(ValueError, match=r"must be \[N, bands\]"):
        fit_voices(np.zeros(VOICE_BANDS), 2)


def test_voice_presets_are_checked_and_use_no_side_information():
    p = get_preset("awe_voice")
    assert p.per_speaker and not p.side_information and p.voices == 4 and p.shape == (13, 10)
    assert get_preset("awe_speaker").per_speaker and not get_preset("awe").per_speaker
    with pytest.raises(ValueError, match="voices >= 2"):
        get_preset("awe_voice", voices=1)
    with pytest.raises(ValueError, match="voices is for normalisation 'voice' only"):
        get_preset("awe", voices=3)
    assert get_preset("awe_voice", voices=6).digest() != p.digest()


def _two_voices(tmp_path) -> list[AudioRecord]:
    """12 clips: a low and a high buzz ('speakers', even / odd k) saying two words (short and long)."""
    recs = []
    for k in range(12):
        freq = (110.0 if k % 2 == 0 else 330.0) * (1 + 0.01 * k)
        path = af.write_tone(tmp_path / "src" / f"c{k:02d}.wav", 8000, 0.3 + 0.2 * (k // 2 % 2), freq)
        recs.append(AudioRecord(f"c{k:02d}", path, str(k // 2 % 2), "room"))
    return recs


def test_a_voice_table_is_normalised_per_inferred_speaker_on_load(tmp_path):
    """Two 'speakers' (a low and a high buzz) saying two 'words' (short and long): no speaker ids in
    the dataset ('folder' groups are not speakers), yet the voices are found and each is standardised."""
    recs = _two_voices(tmp_path)
    preset = get_preset("awe_voice", voices=2)
    table = load_table(build_cache(DatasetScan("toy", tmp_path / "src", recs, []), preset, tmp_path / "out",
                                   progress=False).cache_dir)
    assert tuple(table.voice.shape) == (12, VOICE_BANDS) and set(table.groups) == {"room"}
    low = np.array([int(i[1:]) % 2 == 0 for i in table.ids])
    assert len(set(table.speakers[low])) == 1 and len(set(table.speakers[~low])) == 1
    assert set(table.speakers[low]) != set(table.speakers[~low])
    assert np.array_equal(table.speaker_ids, table.speakers)
    # the table's voice model normalises a clip as the loader did (what predict does with a new clip)
    raw = load_table(build_cache(DatasetScan("toy", tmp_path / "src", recs, []), get_preset("awe_raw"),
                                 tmp_path / "raw", progress=False).cache_dir)
    assert np.array_equal(table.voice_model.assign(table.voice), table.speakers)
    again = table.voice_model.normalise(raw.spectrogram.float(), raw.mask, table.speakers).to(torch.float16)
    assert torch.equal(again, table.spectrogram)
    x = table.spectrogram.float()
    for v in np.unique(table.speakers):
        xs = x[torch.as_tensor(table.speakers == v)]
        assert float(xs.mean(dim=(0, 2)).abs().max()) < 2e-3
    sub = table.take(np.array([3, 0]))
    assert list(sub.speakers) == [table.speakers[3], table.speakers[0]] and tuple(sub.voice.shape) == (2, VOICE_BANDS)


def _voice_table(n_per=8) -> FeatureTable:
    """Two inferred voices x three words, 13 x 10, on awe_voice; the dataset's groups say nothing."""
    rng = np.random.default_rng(0)
    words, voices = np.repeat(np.arange(3), 2 * n_per), np.tile(np.repeat([0, 1], n_per), 3)
    n = len(words)
    spec = rng.normal(size=(3, 13, 10))[words] + 0.1 * rng.normal(size=(n, 13, 10))
    return FeatureTable(ids=np.array([f"c{i:03d}" for i in range(n)]),
                        spectrogram=torch.tensor(spec, dtype=torch.float16), mask=torch.ones(n, 10),
                        norm_stats=torch.zeros(n, 4), labels=np.array(list("abc"))[words],
                        label_index=torch.tensor(words), classes=list("abc"), groups=np.array(["room"] * n),
                        split=np.array(["train", "train", "val", "test"] * (n // 4)), preset=AWE_VOICE,
                        cache_key="k", dataset="toy", voice=torch.zeros(n, VOICE_BANDS),
                        speakers=np.array(["v0", "v1"])[voices])


def test_speaker_aware_settings_read_the_inferred_speakers(one_thread):
    from trainables.loop import train
    from trainables.split_data import SplitData

    cfg = resolve_config({"model": "uvac", "recipe": "recommended"}, preset=AWE_VOICE)
    assert cfg["prior_init"] == "aligned" and cfg["speaker_independence"] > 0  # the per-speaker recipe
    check_frontend({**cfg, "frontend": "awe_voice"}, AWE_VOICE)
    with pytest.raises(ConfigError, match="given \\(e.g. awe_speaker\\) or inferred \\(e.g. awe_voice\\)"):
        check_frontend({**cfg, "frontend": "awe"}, PRESETS["awe"])
    table = _voice_table()
    batch = SplitData(table, torch.device("cpu"), True, groups=True).batch(torch.tensor([0, 8, 9]))
    assert batch.group.tolist() == [0, 1, 1]  # the voices, not the dataset's single group
    res = train({"model": "uvac", "epochs": 2, "batch_size": 8, "prior_init": "aligned", "prior_warmup_epochs": 1,
                 "speaker_independence": 1.0, "channels": "2,3,4,4", "gru_hidden": 6, "checkpoint_every": 0}, table)
    assert res.status == "complete" and res.history[1]["train/prior_fitted_at"] == 1.0


def test_the_aligned_baseline_runs_on_inferred_speakers_and_the_suite_skips_too_few_clips(tmp_path):
    from trainables.baseline_suite import REFERENCE_BASELINES, reference_tables
    from trainables.baselines import BASELINES

    res = BASELINES["aligned_kmeans"].run(_voice_table(), 3, 0)
    assert res.info["speakers"] == 2 and res.metrics["val/acc"] > 0.9
    assert REFERENCE_BASELINES["awe_voice"]["aligned"] == "aligned_kmeans"
    recs = [AudioRecord(f"c{k}", af.write_tone(tmp_path / "src" / f"c{k}.wav", 8000, 0.4, 200.0 * (k + 1)),
                        str(k % 2), "room") for k in range(5)]
    cache = build_cache(DatasetScan("toy", tmp_path / "src", recs, []), PRESETS["awe"], tmp_path / "out",
                        progress=False).cache_dir
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refs = reference_tables(cache, load_table(cache), presets=("awe", "awe_voice"))
    assert list(refs) == ["awe"]
    assert any("'awe_voice' left out: cannot cluster 5 clips into 4 voices" in str(w.message) for w in caught)


def test_the_voice_count_is_chosen_when_the_table_is_loaded_and_checked(tmp_path):
    from trainables.train import main as train_main

    recs = _two_voices(tmp_path)
    cache = build_cache(DatasetScan("toy", tmp_path / "src", recs, []), get_preset("awe_voice", voices=2),
                        tmp_path / "out", progress=False).cache_dir
    two, three = load_table(cache), load_table(cache, voices=3)
    assert two.preset.voices == 2 and len(set(two.speakers)) == 2
    assert three.preset.voices == 3 and three.preset.name == "awe_voice" and len(set(three.speakers)) == 3
    assert not torch.equal(two.spectrogram, three.spectrogram)  # normalised per each count's voices
    cfg = resolve_config({"model": "uvac", "voices": 3}, preset=three.preset)
    check_frontend(cfg, three.preset)
    with pytest.raises(ConfigError, match="loaded with 2 voices"):
        check_frontend(cfg, two.preset)
    with pytest.raises(ConfigError, match="front end 'awe' has band normalisation"):
        check_frontend({**cfg, "model": "kmeans"}, PRESETS["awe"])
    with pytest.raises(ConfigError, match="voices: must be 0"):
        resolve_config({"voices": 1})
    raw = build_cache(DatasetScan("toy", tmp_path / "src", recs, []), get_preset("awe"), tmp_path / "awe",
                      progress=False).cache_dir
    with pytest.raises(ValueError, match="voices is for a front end normalised per inferred speaker"):
        load_table(raw, voices=3)
    # the command line: the run is trained and recorded with the count asked for
    out = tmp_path / "run"
    assert train_main(["--model", "kmeans", "--features", str(cache), "--voices", "3", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["voices"] == 3 and len(VoiceModel.from_dict(saved["voice_model"]).assign(three.voice).tolist()) == 12
    assert set(VoiceModel.from_dict(saved["voice_model"]).assign(three.voice)) == set(three.speakers)
    refused = ["--model", "kmeans", "--features", str(raw), "--voices", "3", "--out", str(tmp_path / "r2")]
    assert train_main(refused) == 2 and not (tmp_path / "r2").exists()


def test_the_suite_names_voice_baselines_run_with_another_count_by_their_count(tmp_path):
    """benchmarks.quality runs the voice baselines at a candidate's voice count too: those rows carry the
    count in their name and label; at the registered count they are the suite's usual rows."""
    from trainables.baseline_suite import get_voices, run_references

    recs = _two_voices(tmp_path)
    cache = build_cache(DatasetScan("toy", tmp_path / "src", recs, []), get_preset("awe_voice", voices=2),
                        tmp_path / "out", progress=False).cache_dir
    registered = get_voices("awe_voice")
    other = 3 if registered != 3 else 2
    rows = run_references({"awe_voice": load_table(cache, voices=other)}, 2, seeds=[0], sample_size=None)
    assert [r.name for r in rows] == [f"awe_voice_v{other}_{s}" for s in ("kmeans", "gmm", "aligned")]
    assert all(f", {other} voices)" in r.label for r in rows)
    assert all(r.n_rows == 12 and r.preset == "awe_voice" for r in rows)
    usual = run_references({"awe_voice": load_table(cache, voices=registered)}, 2, seeds=[0], sample_size=None)
    assert [r.name for r in usual] == ["awe_voice_kmeans", "awe_voice_gmm", "awe_voice_aligned"]
    assert get_voices("awe") is None
