"""Conformance driven by the registries: every adapter in ``features.datasets.DATASETS`` and every
front end in ``features.frontend.PRESETS`` goes through the same invariants.

A new adapter needs an entry in :data:`LAYOUTS` (a tiny instance of its layout and a way to plant
a member that leads outside the root); ``test_every_adapter_has_a_layout`` fails until it has one.
"""
from __future__ import annotations

import builtins
import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from features.cache import build_cache, load_table
from features.audio import load_audio
from features.datasets import CLASSES, DATASETS, DEFAULT_PRESET, scan_dataset
from features.datasets.base import AudioRecord, DatasetScan
from features.datasets.synthetic import ensure_synthetic
from features.frontend import PRESETS, compute_features
from features.voice import VOICE_BANDS
from tests import audio_factory as af

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
SYNTH = {"seed": 3, "n_per_class": 2, "n_classes": 3}


def _link(at: Path, outside: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, at)


def _add_csv_row(path: Path, row: list, delimiter: str = ",") -> None:
    with path.open("a", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter=delimiter, lineterminator="\n").writerow(row)


def _us8k_escape(root: Path, outside: Path) -> None:
    _link(root / "audio" / "fold1" / "100999-0-0-0.wav", outside)  # a symlink named by a metadata row
    _add_csv_row(root / "metadata" / "UrbanSound8K.csv", ["100999-0-0-0.wav", 1, 0, 1, 1, 1, 0, "siren"])
    _add_csv_row(root / "metadata" / "UrbanSound8K.csv", [f"../../../{outside.name}", 2, 0, 1, 1, 1, 0, "siren"])


def _tau_escape(root: Path, outside: Path) -> None:
    _link(root / "audio" / "park-lyon-1-9-a.wav", outside)
    _add_csv_row(root / "meta.csv", ["audio/park-lyon-1-9-a.wav", "park", "lyon-1", "a"], "\t")
    _add_csv_row(root / "meta.csv", [f"../{outside.name}", "park", "lyon-1", "a"], "\t")
    _add_csv_row(root / "meta.csv", [str(outside), "park", "lyon-1", "a"], "\t")


@dataclass(frozen=True)
class Layout:
    make: Callable[[Path], Path]  # writes a tiny instance under the given folder, returns the root
    escape: Callable[[Path, Path], None]  # plants members of the root that lead to `outside`
    opts: dict


LAYOUTS: dict[str, Layout] = {
    "audiomnist": Layout(af.make_audiomnist_tree, lambda r, o: _link(r / "data" / "01" / "0_01_9.wav", o), {}),
    "fsdd": Layout(af.make_fsdd_tree, lambda r, o: _link(r / "recordings" / "0_george_9.wav", o), {}),
    "urbansound8k": Layout(af.make_us8k_tree, _us8k_escape, {}),
    "tau2019": Layout(af.make_tau_tree, _tau_escape, {}),
    "folder": Layout(af.make_folder_tree, lambda r, o: _link(r / "cat" / "s1" / "escape.wav", o), {}),
    "synthetic": Layout(lambda r: ensure_synthetic(r, **SYNTH), lambda r, o: _link(r / "tone" / "spk0" / "x.wav", o),
                        SYNTH),
}


class OpenSpy:
    """Records every path opened through builtins.open / io.open / os.open while installed."""

    def __init__(self, monkeypatch):
        self.opened: list[str] = []
        real_open, real_os_open = builtins.open, os.open

        def spy_open(file, *a, **k):
            self.opened.append(str(file))
            return real_open(file, *a, **k)

        def spy_os_open(path, *a, **k):
            self.opened.append(str(path))
            return real_os_open(path, *a, **k)

        monkeypatch.setattr(builtins, "open", spy_open)
        monkeypatch.setattr(io, "open", spy_open)
        monkeypatch.setattr(os, "open", spy_os_open)


def test_every_adapter_has_a_layout_and_a_class_list():
    assert set(LAYOUTS) == set(DATASETS)
    assert set(CLASSES) == set(DATASETS)


@pytest.fixture(params=sorted(DATASETS))
def planted(request, tmp_path):
    """(name, root, outside, scan) of every adapter, with members leading outside the root planted."""
    name = request.param
    layout = LAYOUTS[name]
    root = layout.make(tmp_path / "data" / name)
    outside = af.write_tone(tmp_path / "secret.wav")
    layout.escape(root, outside)
    return name, root, outside, layout.opts


def test_adapter_invariants_and_it_never_opens_audio(planted, monkeypatch):
    name, root, outside, opts = planted
    spy = OpenSpy(monkeypatch)
    scan = scan_dataset(name, root, **opts)
    monkeypatch.undo()
    audio_opened = [p for p in spy.opened if p.lower().endswith(AUDIO_SUFFIXES)]
    assert audio_opened == [], f"{name} opened audio while listing: {audio_opened[:3]}"
    assert scan.name == name and scan.root == root.resolve()
    ids = [r.id for r in scan.records]
    assert len(ids) == len(set(ids)) and ids == sorted(ids) and ids
    classes = CLASSES[name]
    for r in scan.records:
        assert r.path.is_file() and r.path.resolve().is_relative_to(scan.root), r
        assert r.id == r.path.relative_to(scan.root).with_suffix("").as_posix()
        assert r.group, r
        if classes is None:  # open vocabulary: the first folder under the root
            assert r.label == r.path.relative_to(scan.root).parts[0]
        else:
            assert r.label in classes, r
    escaped = [r for r in scan.records if r.path.resolve() == outside.resolve()]
    assert escaped == [], f"{name} listed a member leading outside its root: {escaped}"
    assert any("outside" in rj.reason or "escapes" in rj.reason for rj in scan.rejects), scan.rejects
    for rj in scan.rejects:
        assert rj.action == "rejected" and rj.reason and "\n" not in rj.reason


def test_every_listed_record_decodes_at_the_default_preset(planted):
    name, root, _outside, opts = planted
    p = PRESETS[DEFAULT_PRESET[name]]
    for r in scan_dataset(name, root, **opts).records:
        clip = load_audio(r.path, p.sample_rate, p.duration_s)
        assert 0 < clip.waveform.numel() <= p.n_samples


def _tone(n: int, rate: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(n) / rate
    return 0.3 * torch.sin(2 * torch.pi * 440.0 * t) + 0.01 * torch.randn(n, generator=g)


def _check_values(p, feats) -> None:
    """The invariants of the preset's normalisation on one clip's features."""
    real = feats.spectrogram[:, feats.mask > 0]
    if p.normalisation == "clip":
        assert float(real.min()) == 0.0 and float(real.max()) == 1.0
    elif p.normalisation == "band":  # CMN: every band has zero mean over the real frames
        assert float(real.mean(1).abs().max()) < 1e-5 and float(real.std()) > 0
    else:  # speaker (the loader standardises per speaker) and none: stored un-normalised
        assert torch.equal(feats.norm_stats, torch.tensor([0.0, 1.0, 0.0, 1.0])) and float(real.std()) > 0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_invariants(name):
    p = PRESETS[name]
    f, t = p.shape
    assert p.name == name and f > 0 and t > 0
    short = compute_features(_tone(p.n_samples // 2, p.sample_rate), p)
    full = compute_features(_tone(p.n_samples, p.sample_rate), p)
    for feats in (short, full):
        assert tuple(feats.spectrogram.shape) == (f, t) and feats.spectrogram.dtype == torch.float32
        assert tuple(feats.mask.shape) == (t,) and tuple(feats.norm_stats.shape) == (4,)
        assert torch.isfinite(feats.norm_stats).all() and torch.isfinite(feats.spectrogram).all()
        assert tuple(feats.voice.shape) == (VOICE_BANDS,) and torch.isfinite(feats.voice).all()
        _check_values(p, feats)
        assert set(feats.mask.unique().tolist()) <= {0.0, 1.0}
        assert torch.all(feats.mask[1:] <= feats.mask[:-1])  # real frames first, then padding
    assert torch.all(full.mask == 1)
    if p.duration_mode == "pad":
        assert 0 < int(short.mask.sum()) < t and torch.all(short.spectrogram[:, short.mask == 0] == 0)
    else:  # stretched: every frame is real, whatever the clip's length
        assert torch.all(short.mask == 1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_the_cache(name, tmp_path):
    p = PRESETS[name]
    n = 2 * p.voices if p.normalisation == "voice" else 4  # inferred speakers: 2 clips per voice at least
    recs = [AudioRecord(f"c{k}", af.write_tone(tmp_path / "src" / f"c{k}.wav", 16000, 0.3 + 0.1 * k, 300.0 * (k + 1)),
                        str(k % 2), f"g{k % 2}") for k in range(n)]
    dataset = "fsdd" if p.normalisation == "speaker" else "toy"  # per-speaker CMVN needs speaker groups
    s = build_cache(DatasetScan(dataset, tmp_path / "src", recs, []), p, tmp_path / "out", progress=False)
    table = load_table(s.cache_dir)
    assert table.shape == p.shape and table.preset == p and table.dataset == dataset and table.n_classes == 2
    x = table.spectrogram.float()
    if p.bounded:
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert tuple(table.voice.shape) == (n, VOICE_BANDS) and torch.isfinite(table.voice).all()
    assert (table.speakers is not None) == (p.normalisation == "voice")
    if p.per_speaker:  # every band of every speaker (given or inferred): zero mean, unit variance
        for g in np.unique(table.speaker_ids):
            xs = x[torch.as_tensor(table.speaker_ids == g)]  # stretched: every frame real
            assert float(xs.mean(dim=(0, 2)).abs().max()) < 2e-3
            std = xs.std(dim=(0, 2), unbiased=False)  # unit, or 0 where a band is constant (e.g. silent)
            assert bool(torch.all(((std - 1).abs() < 2e-3) | (std < 2e-3))) and float(std.max()) > 0.99
    assert tuple(table.mask.shape) == (n, p.shape[1]) and torch.all(x[table.mask[:, None, :].expand_as(x) == 0] == 0)
