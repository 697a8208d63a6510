"""The built-in synthetic dataset: determinism, layout, sizes, idempotence, atomic generation."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from features.audio import load_audio
from features.datasets import DatasetError, scan_dataset
from features.datasets import synthetic
from features.datasets.synthetic import MANIFEST, ensure_synthetic


def _digest(root: Path) -> dict[str, str]:
    return {
        f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """10 classes x 6 clips, seed 3."""
    return ensure_synthetic(tmp_path_factory.mktemp("syn") / "small", seed=3, n_per_class=6)


def test_byte_identical_for_the_same_seed(small, tmp_path):
    again = ensure_synthetic(tmp_path / "again", seed=3, n_per_class=6)
    assert _digest(small) == _digest(again)
    other = ensure_synthetic(tmp_path / "other", seed=4, n_per_class=6)
    a, b = _digest(small), _digest(other)
    assert sum(a.get(k) == v for k, v in b.items()) == 0


def test_generate_clip_is_a_pure_function():
    x1, s1 = synthetic.generate_clip(0, 2, 5)
    x2, s2 = synthetic.generate_clip(0, 2, 5)
    assert s1 == s2 == "spk0"
    np.testing.assert_array_equal(x1, x2)
    x3, _ = synthetic.generate_clip(0, 2, 6)
    assert x1.shape != x3.shape or not np.array_equal(x1, x3)


def test_layout_classes_and_groups(small):
    s = scan_dataset("synthetic", small, seed=3, n_per_class=6)
    assert s.name == "synthetic" and s.rejects == []
    assert len(s.records) == 60
    labels = Counter(r.label for r in s.records)
    assert len(labels) == 10 and set(labels.values()) == {6}
    assert sorted(labels) == sorted(synthetic.class_names(10))
    assert {r.group for r in s.records} == {f"spk{k}" for k in range(5)}
    for r in s.records:
        assert r.id == f"{r.label}/{r.group}/{r.path.stem}"
        assert r.path.stem.startswith(f"{r.label}-{r.group}-")
    # every speaker speaks every class (like AudioMNIST speakers): group splits are balanced
    assert len({(r.label, r.group) for r in s.records}) == 50


def test_manifest(small):
    m = json.loads((small / MANIFEST).read_text(encoding="utf-8"))
    assert m["generator"] == "features.datasets.synthetic"
    assert m["generator_version"] == synthetic.GENERATOR_VERSION
    assert (m["seed"], m["n_classes"], m["n_per_class"], m["sample_rate"]) == (3, 10, 6, 16000)
    assert m["n_files"] == len(m["files"]) == 60
    assert len(m["content_sha256"]) == 64


def test_audio_is_valid_16bit_pcm_and_some_clips_are_short(small):
    lengths = []
    for f in sorted(small.rglob("*.wav")):
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert info.frames <= 16000
        lengths.append(info.frames)
        clip = load_audio(f, 16000, 1.0)  # no reject: finite, not silent, not truncated
        assert not clip.cropped
    assert min(lengths) >= 8000
    assert sum(n < 16000 for n in lengths) >= 5  # padding and masks matter
    assert sum(n == 16000 for n in lengths) >= 20


def test_all_twelve_classes_generate(tmp_path):
    root = ensure_synthetic(tmp_path / "all", seed=0, n_per_class=2, n_classes=synthetic.MAX_CLASSES)
    s = synthetic.scan(root, seed=0, n_per_class=2, n_classes=synthetic.MAX_CLASSES)
    assert len({r.label for r in s.records}) == synthetic.MAX_CLASSES == 12
    for c in range(12):
        for i in range(3):
            x, _ = synthetic.generate_clip(1, c, i, n_classes=12, sample_rate=22050)
            assert np.isfinite(x).all() and 0.09 < np.abs(x).max() <= 0.71


def test_default_size(tmp_path):
    """The default: 10 classes x 50 clips of at most 1 s at 16 kHz."""
    s = scan_dataset("synthetic", tmp_path / "default")
    assert len(s.records) == 500
    assert Counter(r.label for r in s.records) == {c: 50 for c in synthetic.class_names(10)}
    assert Counter(r.group for r in s.records) == {f"spk{k}": 100 for k in range(5)}


def test_nothing_regenerated_when_the_manifest_matches(small, monkeypatch):
    before = {f: f.stat().st_mtime_ns for f in small.rglob("*")}

    def boom(*a, **k):
        raise AssertionError("regenerated")

    monkeypatch.setattr(synthetic, "_generate_into", boom)
    assert ensure_synthetic(small, seed=3, n_per_class=6) == small
    assert {f: f.stat().st_mtime_ns for f in small.rglob("*")} == before


def test_other_arguments_replace_a_synthetic_root(tmp_path):
    root = ensure_synthetic(tmp_path / "r", seed=0, n_per_class=2)
    ensure_synthetic(root, seed=1, n_per_class=3)
    m = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    assert (m["seed"], m["n_per_class"]) == (1, 3)
    assert len(list(root.rglob("*.wav"))) == 30
    assert _digest(root) == _digest(ensure_synthetic(tmp_path / "fresh", seed=1, n_per_class=3))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_file_triggers_regeneration(tmp_path):
    root = ensure_synthetic(tmp_path / "r", seed=0, n_per_class=2)
    ref = _digest(root)
    victim = next(root.rglob("*.wav"))
    victim.unlink()
    ensure_synthetic(root, seed=0, n_per_class=2)
    assert _digest(root) == ref


def test_interrupted_generation_leaves_no_root(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.generate_clip

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(synthetic, "generate_clip", flaky)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(tmp_path / "r", seed=0, n_per_class=2)
    assert not (tmp_path / "r").exists()
    assert list(tmp_path.iterdir()) == []  # the temp folder was removed
    monkeypatch.undo()
    root = ensure_synthetic(tmp_path / "r", seed=0, n_per_class=2)
    assert len(synthetic.scan(root, seed=0, n_per_class=2).records) == 20


def test_stale_temp_of_a_dead_process_is_cleaned(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    stale = tmp_path / f".r.tmp-{dead}-deadbeef"
    (stale / "tone").mkdir(parents=True)
    ensure_synthetic(tmp_path / "r", seed=0, n_per_class=1)
    assert not stale.exists()


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "thesis.tex").write_text("precious", encoding="utf-8")
    with pytest.raises(DatasetError, match="refusing to overwrite"):
        ensure_synthetic(root, seed=0, n_per_class=1)
    assert (root / "thesis.tex").read_text(encoding="utf-8") == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(list(ensure_synthetic(empty, seed=0, n_per_class=1).rglob("*.wav"))) == 10


@pytest.mark.parametrize("kw", [{"n_classes": 1}, {"n_classes": 13}, {"n_per_class": 0}, {"sample_rate": 4000}])
def test_bad_sizes(tmp_path, kw):
    with pytest.raises(ValueError):
        ensure_synthetic(tmp_path / "x", **kw)
