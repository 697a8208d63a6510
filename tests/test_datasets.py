"""Dataset adapters on tiny fixtures with each dataset's real layout, wrong roots, rejects."""
from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import pytest

from features.audio import load_audio
from features.datasets import DATASETS, DEFAULT_PRESET, scan_dataset
from features.datasets import audiomnist, folder, fsdd, tau2019, urbansound8k
from features.datasets.base import (
    REASON_ABSOLUTE,
    REASON_DUPLICATE,
    REASON_ESCAPES,
    REASON_MISSING,
    REASON_SYMLINK_OUTSIDE,
    DatasetError,
    DatasetScan,
)
from tests import audio_factory as af
from tests.test_features_conformance import OpenSpy

FSDD_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
FSDD_REAL = Path(os.environ.get("FSDD_ROOT", FSDD_REAL))


def _check_scan(s: DatasetScan, name: str, root: Path) -> None:
    """Invariants of every scan: unique ids without suffix, paths inside the root, sorted."""
    assert s.name == name
    assert s.root == root.resolve()
    ids = [r.id for r in s.records]
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids)
    for r in s.records:
        assert r.path.is_absolute() and r.path.is_file()
        assert r.path.resolve().is_relative_to(s.root)
        assert r.id == r.path.relative_to(s.root).with_suffix("").as_posix()
        assert r.label and r.group
    for rj in s.rejects:
        assert rj.action == "rejected" and rj.reason and "\n" not in rj.reason


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------
def test_registry_and_default_presets():
    names = {"audiomnist", "fsdd", "urbansound8k", "tau2019", "folder", "synthetic"}
    assert set(DATASETS) == names
    assert set(DEFAULT_PRESET) == names
    assert DEFAULT_PRESET == {  # spoken words: the front end of the recommended recipe (README)
        "audiomnist": "awe_voice",
        "fsdd": "awe_voice",
        "urbansound8k": "urban4s",
        "tau2019": "urban10s",
        "folder": "audiomnist",
        "synthetic": "compact",
    }
    from features.frontend import PRESETS

    assert set(DEFAULT_PRESET.values()) <= set(PRESETS)
    from trainables.config import recipe_frontend
    from features.datasets import SPEECH_DATASETS

    assert all(DEFAULT_PRESET[d] == recipe_frontend("recommended", "uvac") for d in SPEECH_DATASETS)


def test_unknown_dataset(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        scan_dataset("nope", tmp_path)


# ---------------------------------------------------------------------------------------
# Each adapter on its real layout
# ---------------------------------------------------------------------------------------
def test_audiomnist(tmp_path):
    root = af.make_audiomnist_tree(tmp_path / "AudioMNIST", speakers=(1, 12), digits=(0, 5, 9), takes=2)
    s = scan_dataset("audiomnist", root)
    _check_scan(s, "audiomnist", root)
    assert len(s.records) == 2 * 3 * 2
    assert {r.label for r in s.records} == {"0", "5", "9"}
    assert {r.group for r in s.records} == {"01", "12"}
    rec = next(r for r in s.records if r.id == "data/12/5_12_1")
    assert (rec.label, rec.group) == ("5", "12")
    assert [(r.id, r.reason) for r in s.rejects] == [("data/01/notes_take", audiomnist.REASON_BAD_NAME)]


def test_audiomnist_misplaced_files(tmp_path):
    root = af.make_audiomnist_tree(tmp_path / "am", speakers=(3,), digits=(1,), takes=1, bad_name=False)
    af.write_tone(root / "data" / "03" / "2_04_0.wav")  # speaker 04 in folder 03
    af.write_tone(root / "data" / "1_03_5.wav")  # not in a speaker folder
    af.write_tone(root / "data" / "03" / "deeper" / "1_03_6.wav")
    s = audiomnist.scan(root)
    assert [r.id for r in s.records] == ["data/03/1_03_0"]
    reasons = {r.id: r.reason for r in s.rejects}
    assert reasons == {
        "data/03/2_04_0": audiomnist.REASON_SPEAKER_MISMATCH,
        "data/1_03_5": audiomnist.REASON_BAD_PLACE,
        "data/03/deeper/1_03_6": audiomnist.REASON_BAD_PLACE,
    }


def test_fsdd(tmp_path):
    root = af.make_fsdd_tree(tmp_path / "fsdd", speakers=("george", "jackson", "theo"), digits=(0, 7), takes=3)
    (root / "recordings" / "7_theo_notes.txt").write_text("x", encoding="utf-8")  # ignored: not .wav
    s = scan_dataset("fsdd", root)
    _check_scan(s, "fsdd", root)
    assert len(s.records) == 3 * 2 * 3
    assert Counter(r.group for r in s.records) == {"george": 6, "jackson": 6, "theo": 6}
    assert Counter(r.label for r in s.records) == {"0": 9, "7": 9}
    assert s.records[0].id == "recordings/0_george_0"
    assert [(r.id, r.reason) for r in s.rejects] == [("recordings/unknown", fsdd.REASON_BAD_NAME)]


def test_urbansound8k(tmp_path, monkeypatch):
    root = af.make_us8k_tree(tmp_path / "UrbanSound8K", classes=("dog_bark", "siren"), folds=(1, 3), per_fold=2)
    assert (tmp_path / "outside.wav").is_file()  # the file the ../ row points to exists
    spy = OpenSpy(monkeypatch)
    s = scan_dataset("urbansound8k", root)
    monkeypatch.undo()
    _check_scan(s, "urbansound8k", root)
    # only the metadata was opened: neither the outside file nor any audio
    assert [Path(p).name for p in spy.opened] == ["UrbanSound8K.csv"]
    assert len(s.records) == 2 * 2 * 2
    assert {r.group for r in s.records} == {"fold1", "fold3"}
    assert {r.label for r in s.records} == {"dog_bark", "siren"}
    assert all(r.id.startswith(f"audio/{r.group}/") for r in s.records)
    reasons = {r.reason for r in s.rejects}
    assert reasons == {REASON_MISSING, REASON_ESCAPES}
    esc = next(r for r in s.rejects if r.reason == REASON_ESCAPES)
    assert "outside" in esc.path


def test_urbansound8k_bad_rows(tmp_path):
    root = af.make_us8k_tree(tmp_path / "us", classes=("siren",), folds=(1,), per_fold=2, bad_rows=False)
    outside = af.write_tone(tmp_path / "secret.wav")
    os.symlink(outside, root / "audio" / "fold1" / "link.wav")
    os.symlink(root / "audio" / "fold1" / "100001-0-0-0.wav", root / "audio" / "fold1" / "inner.wav")
    meta = root / "metadata" / "UrbanSound8K.csv"
    with meta.open("a", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["link.wav", 1, 0, 1, 1, 1, 0, "siren"])  # symlink escaping the root
        w.writerow(["inner.wav", 1, 0, 1, 1, 1, 0, "siren"])  # symlink inside the root: fine
        w.writerow(["100001-0-0-0.wav", 1, 0, 1, 1, 1, 0, "siren"])  # duplicate
        w.writerow(["x.wav", 1, 0, 1, 1, "one", 0, "siren"])  # bad fold
        w.writerow(["y.wav", 1, 0, 1, 1, 1, 0, ""])  # empty class
        w.writerow([str(outside), 1, 0, 1, 1, 1, 0, "siren"])  # absolute name: stays under audio/fold1
        w.writerow(["short"])  # malformed
    s = urbansound8k.scan(root)
    assert {r.id for r in s.records} == {"audio/fold1/100001-0-0-0", "audio/fold1/100002-0-0-1", "audio/fold1/inner"}
    got = Counter(r.reason for r in s.rejects)
    assert got == Counter(
        {
            REASON_SYMLINK_OUTSIDE: 1,
            REASON_DUPLICATE: 1,
            urbansound8k.REASON_BAD_FOLD: 1,
            urbansound8k.REASON_EMPTY_CLASS: 1,
            REASON_MISSING: 1,
            urbansound8k.REASON_MALFORMED: 1,
        }
    )


def test_tau2019(tmp_path, monkeypatch):
    root = af.make_tau_tree(tmp_path / "TAU-urban-acoustic-scenes-2019-development")
    spy = OpenSpy(monkeypatch)
    s = scan_dataset("tau2019", root)
    monkeypatch.undo()
    _check_scan(s, "tau2019", root)
    assert [Path(p).name for p in spy.opened] == ["meta.csv"]
    assert len(s.records) == 2 * 2 * 2
    assert {r.label for r in s.records} == {"airport", "park"}
    assert {r.group for r in s.records} == {"barcelona-0", "lyon-1"}
    rec = next(r for r in s.records if r.id == "audio/park-lyon-1-1-a")
    assert (rec.label, rec.group) == ("park", "lyon-1")
    assert Counter(r.reason for r in s.rejects) == {REASON_MISSING: 1, REASON_ABSOLUTE: 1}


def test_tau2019_identifier_fallback_and_escape(tmp_path):
    root = af.make_tau_tree(tmp_path / "tau", scenes=("metro",), locations=("paris-3",), segments=1, bad_rows=False)
    af.write_tone(root / "audio" / "bus-vienna-7-2-a.wav")
    af.write_tone(tmp_path / "evil.wav")
    with (root / "meta.csv").open("a", newline="", encoding="utf-8") as fh:
        fh.write("audio/bus-vienna-7-2-a.wav\tbus\t\ta\n")  # empty identifier: from the name
        fh.write("audio/../../evil.wav\tbus\tvienna-7\ta\n")
    s = tau2019.scan(root)
    assert {(r.id, r.group) for r in s.records} == {("audio/metro-paris-3-0-a", "paris-3"),
                                                    ("audio/bus-vienna-7-2-a", "vienna-7")}
    assert [r.reason for r in s.rejects] == [REASON_ESCAPES]
    assert tau2019.identifier_from_name("audio/street_pedestrian-lyon-1-2-a.wav") == "lyon-1"
    assert tau2019.identifier_from_name("whatever.wav") is None


def test_folder(tmp_path):
    root = af.make_folder_tree(tmp_path / "clips", classes=("cat", "dog"), groups=("s1", "s2"), per_group=2,
                               ungrouped=1)
    s = scan_dataset("folder", root)
    _check_scan(s, "folder", root)
    assert len(s.records) == 2 * (2 * 2 + 1)
    assert s.rejects == []
    assert Counter(r.label for r in s.records) == {"cat": 5, "dog": 5}
    grouped = [r for r in s.records if "/s" in r.id]
    assert {r.group for r in grouped} == {"s1", "s2"}
    solo = [r for r in s.records if "_solo_" in r.id]
    assert [r.group for r in solo] == [r.id for r in solo] == ["cat/cat_solo_0", "dog/dog_solo_0"]
    assert solo[0].path.suffix == ".flac"


def test_folder_odd_files(tmp_path):
    root = af.make_folder_tree(tmp_path / "f", classes=("a",), groups=("g",), per_group=1, ungrouped=0)
    af.write_tone(root / "loose.wav")  # no class folder
    af.write_tone(root / "a" / "g" / "a_g_0.FLAC")  # same id as a_g_0.wav, upper-case suffix
    af.write_tone(root / "a" / "deep" / "er" / "x.ogg", subtype="VORBIS")
    af.write_tone(root / ".hidden" / "h.wav")
    af.write_tone(root / "a" / ".tmp" / "t.wav")
    outside = af.write_tone(tmp_path / "outside" / "o.wav")
    os.symlink(outside, root / "a" / "g" / "escape.wav")
    os.symlink(outside.parent, root / "linked_dir")  # symlinked folder: not followed
    s = folder.scan(root)
    assert {(r.id, r.group) for r in s.records} == {("a/g/a_g_0", "g"), ("a/deep/er/x", "deep")}
    assert {(r.id, r.reason) for r in s.rejects} == {
        ("loose", folder.REASON_NO_CLASS),
        ("a/g/a_g_0", REASON_DUPLICATE),
        ("a/g/escape", REASON_SYMLINK_OUTSIDE),
    }


# ---------------------------------------------------------------------------------------
# Wrong roots: one-line DatasetError naming what was expected
# ---------------------------------------------------------------------------------------
def _one_line_error(name: str, root: Path, *fragments: str) -> None:
    with pytest.raises(DatasetError) as ei:
        scan_dataset(name, root)
    msg = str(ei.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg


@pytest.mark.parametrize("name", ["audiomnist", "fsdd", "urbansound8k", "tau2019", "folder"])
def test_missing_root(tmp_path, name):
    _one_line_error(name, tmp_path / "nowhere", "does not exist")
    f = tmp_path / "file"
    f.write_text("x", encoding="utf-8")
    _one_line_error(name, f, "not a directory")


def test_wrong_roots(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error("audiomnist", empty, "no data/ folder", "data/{speaker:02d}/{digit}_{speaker}_{take}.wav")
    _one_line_error("fsdd", empty, "no recordings/ folder", "recordings/{digit}_{speaker}_{take}.wav")
    _one_line_error("urbansound8k", empty, "metadata/UrbanSound8K.csv")
    _one_line_error("tau2019", empty, "meta.csv", "tab-separated")
    _one_line_error("folder", empty, "no matching file", "<class>/")
    (empty / "recordings").mkdir()
    _one_line_error("fsdd", empty, "no matching file", "recordings/")
    (empty / "data" / "01").mkdir(parents=True)
    _one_line_error("audiomnist", empty, "no matching file")


def test_fsdd_root_given_one_level_too_deep(tmp_path):
    root = af.make_fsdd_tree(tmp_path / "fsdd")
    _one_line_error("fsdd", root / "recordings", "no recordings/ folder")


def test_only_rejects_is_an_error(tmp_path):
    root = tmp_path / "fsdd"
    af.write_tone(root / "recordings" / "hello.wav")
    _one_line_error("fsdd", root, "no usable file", "1 rejected", fsdd.REASON_BAD_NAME)


def test_us8k_metadata_problems(tmp_path):
    root = tmp_path / "us"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "UrbanSound8K.csv").write_text("name,fold\nx.wav,1\n", encoding="utf-8")
    _one_line_error("urbansound8k", root, "lacks column(s) slice_file_name, class")
    (root / "metadata" / "UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\na.wav,1,0,1,1,1,0,dog\n", encoding="utf-8"
    )
    _one_line_error("urbansound8k", root, "no usable file", REASON_MISSING)


def test_tau_comma_separated_metadata_is_an_error(tmp_path):
    root = af.make_tau_tree(tmp_path / "tau", bad_rows=False)
    text = (root / "meta.csv").read_text(encoding="utf-8").replace("\t", ",")
    (root / "meta.csv").write_text(text, encoding="utf-8")
    _one_line_error("tau2019", root, "lacks column(s) filename, scene_label")


# ---------------------------------------------------------------------------------------
# The real FSDD subset (shared/data/fsdd)
# ---------------------------------------------------------------------------------------
def test_fsdd_real_folder():
    if not (FSDD_REAL / "recordings").is_dir():
        pytest.skip(f"real FSDD subset not found at {FSDD_REAL} (set FSDD_ROOT to point to it)")
    s = scan_dataset("fsdd", FSDD_REAL)
    _check_scan(s, "fsdd", FSDD_REAL)
    assert len(s.records) == 2000 and s.rejects == []
    assert Counter(r.label for r in s.records) == {str(d): 200 for d in range(10)}
    assert Counter(r.group for r in s.records) == {"george": 500, "jackson": 500, "nicolas": 500, "yweweler": 500}
    # a few decode at the AudioMNIST preset's rate: 8 kHz -> 48 kHz, under 1 s, not cropped
    for r in s.records[::400]:
        clip = load_audio(r.path, 48000, 1.0)
        assert clip.source_sample_rate == 8000
        assert not clip.cropped and 0 < clip.waveform.numel() <= 48000
        assert clip.waveform.numel() == pytest.approx(clip.source_frames * 6, abs=6)
