"""The build CLI: summary, up-to-date rerun, clear errors, kill-safety, the real FSDD recordings."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from features.build import main
from features.cache import CacheError, load_table

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd"


def write_fsdd_layout(root: Path, n: int, start: int = 0) -> Path:
    """``root/recordings/{digit}_{speaker}_{take}.wav`` at 8 kHz, like the Free Spoken Digit Dataset."""
    rec = root / "recordings"
    rec.mkdir(parents=True, exist_ok=True)
    speakers = ["ann", "bob", "cid", "dee", "eve"]
    for i in range(start, start + n):
        digit, spk, take = i % 10, speakers[(i // 10) % 5], i // 50
        rng = np.random.default_rng(i)
        t = np.arange(int(8000 * (0.3 + 0.04 * (i % 7)))) / 8000
        x = 0.3 * np.sin(2 * math.pi * (200 + 80 * digit) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(rec / f"{digit}_{spk}_{take}.wav", x.astype(np.float32), 8000, subtype="PCM_16")
    return root


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "features.build", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_builds_then_is_up_to_date(tmp_path, capsys):
    root = write_fsdd_layout(tmp_path / "fsdd", 30)
    out = tmp_path / "out"
    args = ["--dataset", "fsdd", "--root", str(root), "--preset", "compact", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "files used:     30 of 30" in text and "64 x 32" in text and "size on disk" in text
    assert "classes:        10" in text
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out
    t = load_table(out)
    assert len(t) == 30 and t.shape == (64, 32)


def test_cli_wrong_root_is_one_line_error(tmp_path):
    r = run_cli("--dataset", "fsdd", "--out", str(tmp_path / "out"), "--root", "/definitely/not/here")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "error" in lines[0] and "/definitely/not/here" in lines[0], r.stderr


def test_cli_missing_root_and_no_usable_file(tmp_path, capsys):
    assert main(["--dataset", "fsdd", "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--root is required" in err[0]
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    (rec / "0_ann_0.wav").write_bytes(b"not audio at all")
    assert main(["--dataset", "fsdd", "--root", str(tmp_path / "fsdd"), "--preset", "compact", "--out",
                 str(tmp_path / "out"), "--no-progress"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no usable audio file" in err[0] and "not a decodable audio file" in err[0]


def _kill_after_first_new_shard(args: list[str], cache_parent: Path, existing: set[str]) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "features.build", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            shards = {p.name for p in cache_parent.glob("*/shard-*.parquet")}
            if shards - existing:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        rc = proc.wait(timeout=60)
    return rc


def test_killed_build_never_looks_complete_and_rebuild_equals_clean(tmp_path):
    root = write_fsdd_layout(tmp_path / "fsdd", 20)
    out = tmp_path / "out"
    base = ["--dataset", "fsdd", "--root", str(root), "--preset", "compact", "--no-progress", "--shard-size", "3"]
    assert main([*base, "--out", str(out)]) == 0
    first = load_table(out)
    assert len(first) == 20

    # 1) an incremental build killed midway: the previous complete table is what loads
    write_fsdd_layout(root, 40, start=20)
    existing = {p.name for p in out.glob("*/shard-*.parquet")}
    rc = _kill_after_first_new_shard([*base, "--out", str(out)], out, existing)
    assert rc == -signal.SIGKILL, "the build finished before it could be killed"
    after_kill = load_table(out)
    assert list(after_kill.ids) == list(first.ids) and after_kill.cache_key == first.cache_key

    # 2) a first build killed midway: no manifest, the directory refuses to load
    fresh = tmp_path / "fresh"
    rc = _kill_after_first_new_shard([*base, "--out", str(fresh)], fresh, set())
    assert rc == -signal.SIGKILL
    with pytest.raises(CacheError):
        load_table(next(fresh.iterdir()))

    # 3) rebuilding both gives exactly a clean build
    assert main([*base, "--out", str(out)]) == 0
    assert main([*base, "--out", str(fresh)]) == 0
    assert main([*base, "--out", str(tmp_path / "clean")]) == 0
    clean = load_table(tmp_path / "clean")
    for d in (out, fresh):
        t = load_table(d)
        assert len(t) == 60 and list(t.ids) == list(clean.ids) and t.cache_key == clean.cache_key
        assert torch.equal(t.spectrogram, clean.spectrogram) and torch.equal(t.mask, clean.mask)
        assert np.array_equal(t.split, clean.split)
        cache_dir = next(d.iterdir())
        listed = {p.name for p in cache_dir.glob("shard-*.parquet")}
        manifest = json.loads((cache_dir / "manifest.json").read_text())
        assert listed == {sh["file"] for sh in manifest["shards"]}  # orphans of the killed build are gone
        assert not any(p.name.startswith(".tmp-") for p in cache_dir.iterdir())


def test_cli_synthetic_needs_no_root(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--dataset", "synthetic", "--out", str(out), "--no-progress", "--limit", "40"]) == 0
    assert (out / "sources" / "synthetic-seed0").is_dir()
    t = load_table(out)
    assert len(t) == 40 and t.shape == t.preset.shape


def test_real_fsdd_subset(tmp_path, capsys):
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"real FSDD recordings not found at {FSDD} (shared data folder absent)")
    out = tmp_path / "out"
    assert main(["--dataset", "fsdd", "--root", str(FSDD), "--preset", "audiomnist", "--out", str(out),
                 "--limit", "100", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "128 x 99" in text
    t = load_table(out)
    assert len(t) == 100 and t.shape == (128, 99)
    assert t.classes == [str(d) for d in range(10)]
    assert float(t.spectrogram.float().max()) == 1.0 and float(t.spectrogram.float().min()) == 0.0
    assert 0 < float(t.mask.mean()) < 1  # FSDD clips are shorter than 1 s: padding is masked
    g = load_table(out, split_scheme="group")
    for name in ("train", "val", "test"):
        assert set(g.groups[g.split == name]).isdisjoint(set(g.groups[g.split != name]))


@pytest.mark.parametrize(
    "dataset,maker,n_records,n_scan_rejects",
    [
        ("audiomnist", "make_audiomnist_tree", 12, 1),
        ("fsdd", "make_fsdd_tree", 12, 1),
        ("urbansound8k", "make_us8k_tree", 12, 2),
        ("tau2019", "make_tau_tree", 8, 2),
        ("folder", "make_folder_tree", 10, 0),
    ],
)
def test_every_adapter_with_the_same_flags(tmp_path, capsys, dataset, maker, n_records, n_scan_rejects):
    from tests import audio_factory

    root = getattr(audio_factory, maker)(tmp_path / "data" / dataset)
    out = tmp_path / "out"
    # default preset of the dataset, with a shorter time context to keep the test small
    assert main(["--dataset", dataset, "--root", str(root), "--out", str(out), "--duration", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"files used:     {n_records} of {n_records}" in text
    assert f"files rejected: {n_scan_rejects}" in text
    t = load_table(out)
    assert len(t) == n_records
    from features.datasets import DEFAULT_PRESET

    assert t.preset.name == DEFAULT_PRESET[dataset] and t.preset.duration_s == 1.0
    g = load_table(out, split_scheme="group")
    for name in set(g.split):
        assert set(g.groups[g.split == name]).isdisjoint(set(g.groups[g.split != name]))


def test_cli_into_a_closed_pipe_exits_quietly(tmp_path):
    """``features.build ... | head -1``: the reader is gone before the summary is written; the
    build still completes, without a BrokenPipeError traceback, and exits 141 (SIGPIPE's)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # what head does after its one line
    try:
        r = subprocess.run([sys.executable, "-m", "features.build", "--dataset", "synthetic", "--limit", "12",
                            "--out", str(tmp_path / "out"), "--no-progress"], cwd=REPO, stdout=write_end,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
    assert r.returncode == 141
    assert len(load_table(tmp_path / "out")) == 12  # the cache was built all the same
