"""python -m trainables.train: artifacts, one JSON line, flags from DEFAULTS, resume, baselines."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from trainables.train import build_parser, main

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--channels", "4,8,8,8", "--gru-hidden", "8", "--d-z", "4", "--batch-size", "16",
              "--device", "cpu", "--silhouette-sample", "200"]


def _last_json_line(text: str) -> dict:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert lines, "no output on stdout"
    return json.loads(lines[-1])


def test_every_config_key_is_a_flag():
    from trainables.config import DEFAULTS

    p = build_parser()
    dests = {a.dest for a in p._actions}
    assert set(DEFAULTS) <= dests
    args = p.parse_args(["--out", "x", "--tau-kind", "cosine", "--lam", "2"])
    assert args.tau_kind == "cosine" and args.lam == "2"


def test_cli_writes_all_artifacts(tiny_cache, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainables.train", "--model", "cat_uvac", "--features", str(tiny_cache.dir),
           "--epochs", "2", "--out", str(run), "--lam", "2", "--tau-kind", "cosine", *TINY_FLAGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    final = _last_json_line(proc.stdout)
    assert len(proc.stdout.strip().splitlines()) == 1  # stdout holds exactly one JSON line
    assert final["status"] == "complete" and final["epochs_done"] == 2
    assert "val/acc" in final and "test/acc" in final
    assert "epoch 1/2" in proc.stderr and "epoch 2/2" in proc.stderr  # progress on stderr

    cfg = json.loads((run / "config.json").read_text())
    assert cfg["lam"] == 2.0 and cfg["tau_kind"] == "cosine" and cfg["epochs"] == 2
    assert cfg["cache_key"] == tiny_cache.table.cache_key and cfg["preset"]["name"] == "compact"
    assert Path(cfg["features"]).exists()
    assert (run / "checkpoint" / "state.pt").exists()
    hist = [json.loads(ln) for ln in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["metrics"]["test/acc"] == final["test/acc"]
    tab = pq.read_table(run / "assignments.parquet")
    assert tab.column_names == ["id", "split", "label", "cluster", "probabilities"]
    assert tab.num_rows == len(tiny_cache.table)
    assert len(tab["probabilities"][0].as_py()) == len(tiny_cache.table.classes)


def test_cli_resume_continues(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["--model", "uvac", "--features", str(tiny_cache.dir), "--out", str(run), "--quiet", *TINY_FLAGS]
    assert main([*base, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    final = _last_json_line(capsys.readouterr().out)
    assert final["epochs_done"] == 2
    hist = [json.loads(ln) for ln in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2]


@pytest.mark.parametrize("model", ["kmeans", "gmm"])
def test_cli_baselines(tiny_cache, tmp_path, capsys, model):
    run = tmp_path / model
    assert main(["--model", model, "--features", str(tiny_cache.dir), "--out", str(run)]) == 0
    final = _last_json_line(capsys.readouterr().out)
    assert final["status"] == "complete" and "test/acc" in final
    assert (run / "assignments.parquet").exists() and (run / "metrics.json").exists()


def test_cli_bad_input_is_a_clear_error(tiny_cache, tmp_path, capsys):
    assert main(["--features", str(tiny_cache.dir), "--out", str(tmp_path / "r"), "--divergence", "l2"]) == 2
    assert "divergence" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "r2")]) == 2
    assert "--features" in capsys.readouterr().err
    assert main(["--features", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r3")]) == 2
    assert "cannot load features" in capsys.readouterr().err
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"lr_start": 1e-4, "lr_end": 1e-3}))
    assert main(["--features", str(tiny_cache.dir), "--out", str(tmp_path / "r4"), "--config", str(cfg)]) == 2
    assert "lr_end" in capsys.readouterr().err
    assert main(["--features", str(tiny_cache.dir), "--out", str(tmp_path / "r5"), "--recipe", "papr"]) == 2
    assert "recipe" in capsys.readouterr().err


def test_cli_unavailable_device_is_one_line_before_any_file(tiny_cache, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error path needs a machine without it")
    out = tmp_path / "r"
    assert main(["--features", str(tiny_cache.dir), "--out", str(out), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' requested but CUDA is not available") and err.count("\n") == 1
    assert not out.exists()


def test_cli_read_only_out_is_one_line_before_training(tiny_cache, tmp_path, tmpfs):
    ro = tmpfs(tmp_path / "ro", read_only=True)
    for out in (ro, ro / "run"):  # the folder itself, or a new one inside it
        r = subprocess.run([sys.executable, "-m", "trainables.train", "--features", str(tiny_cache.dir),
                            "--out", str(out), "--model", "kmeans"], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith(f"error: --out {out}: ") and r.stderr.count("\n") == 1, r.stderr
        assert "read-only" in r.stderr


@pytest.mark.parametrize("model", ["uvac", "cat_uvac", "kmeans", "gmm"])
def test_more_clusters_than_training_clips_is_refused_for_every_model(tiny_cache, tiny_config, tmp_path, capsys,
                                                                      model):
    from trainables.loop import train

    n_train = int((tiny_cache.table.split == "train").sum())
    out = tmp_path / "r"
    args = ["--features", str(tiny_cache.dir), "--out", str(out), "--model", model, "--n-clusters", "500"]
    assert main(args + TINY_FLAGS) == 2
    err = capsys.readouterr().err
    assert err == f"error: n_clusters=500 is more than the {n_train} clips of the train split " \
                  "(at most one cluster per training clip); lower --n-clusters\n"
    assert not out.exists(), "a run folder was written before the input was checked"
    with pytest.raises(ValueError, match=f"n_clusters=500 is more than the {n_train} clips"):
        train(tiny_config(model=model, n_clusters=500, epochs=1), tiny_cache.table)  # the study's trials


def test_full_disk_keeps_the_last_good_checkpoint_and_says_so(tiny_cache, tmp_path, tmpfs):
    """The run folder on a 512 KiB disk: epoch 1's checkpoint (~340 KB) fits, epoch 2's
    (written beside it before the swap) does not."""
    from trainables.checkpoint import load_checkpoint

    out = tmpfs(tmp_path / "small", size="512k") / "run"
    r = subprocess.run([sys.executable, "-m", "trainables.train", "--features", str(tiny_cache.dir), "--out", str(out),
                        "--model", "uvac", "--epochs", "3", "--quiet", *TINY_FLAGS], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: no space left on {out}"), r.stderr
    assert "the last good checkpoint (epoch 1) is kept" in r.stderr and "--resume" in r.stderr
    assert load_checkpoint(out / "checkpoint")["epoch"] == 1
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["config.json", "state.pt"]  # no half file
    for line in (out / "history.jsonl").read_text().splitlines():
        json.loads(line)  # no half-written line
    assert json.loads((out / "config.json").read_text())["model"] == "uvac"
    assert not (out / "metrics.json").exists()  # no result claims the run finished


def test_a_vote_killed_among_its_candidates_resumes_from_the_cli(tiny_cache, tmp_path, capsys):
    """SIGKILL once the checkpoint holds a finished candidate; --resume trains the rest and ends as the
    uninterrupted run (the same clusters, each epoch reported once)."""
    import signal
    import time

    from trainables.checkpoint import load_checkpoint

    flags = ["--model", "uvac", "--features", str(tiny_cache.dir), "--epochs", "6", "--restarts", "3",
             "--restart-combine", "vote", "--checkpoint-every", "1", "--quiet", *TINY_FLAGS]
    assert main([*flags, "--out", str(tmp_path / "straight")]) == 0
    straight = _last_json_line(capsys.readouterr().out)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "trainables.train", *flags, "--out", str(run)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, done = time.monotonic() + 240, 0
    while proc.poll() is None and time.monotonic() < deadline and done < 1:
        time.sleep(0.05)
        try:
            done = len(load_checkpoint(run / "checkpoint")["restart_progress"]["done"])
        except (FileNotFoundError, KeyError, ValueError):
            pass
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, proc.stderr.read()[-2000:]
    assert done >= 1 and not (run / "metrics.json").exists()
    assert main(["--out", str(run), "--resume", "--quiet"]) == 0
    resumed = _last_json_line(capsys.readouterr().out)
    assert resumed["status"] == "complete" and resumed["epochs_done"] == 6
    for key in ("val/acc", "test/acc", "train/restart"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6), key
    a = pq.read_table(run / "assignments.parquet")["cluster"].to_pylist()
    b = pq.read_table(tmp_path / "straight" / "assignments.parquet")["cluster"].to_pylist()
    assert a == b
    hist = [json.loads(ln) for ln in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
