"""python -m trainables.predict: a fresh copy of a training clip gets that clip's cluster."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.conftest import TINY_CLIPS, TinyCache
from trainables.predict import Predictor, inference_parameters, main

TINY = ["--channels", "4,8,8,8", "--gru-hidden", "8", "--d-z", "4", "--batch-size", "16", "--device", "cpu",
        "--silhouette-sample", "200", "--quiet"]


def _speech_cache(tmp_path_factory, preset: str) -> TinyCache:
    from features.build import scan
    from features.cache import build_cache
    from features.frontend import get_preset

    out = tmp_path_factory.mktemp(f"{preset}_features")
    ds = scan("synthetic", None, out, 0)
    summary = build_cache(ds, get_preset(preset), out, seed=0, limit=TINY_CLIPS, progress=False)
    return TinyCache(dir=Path(summary.cache_dir), table=None, scan=ds)


@pytest.fixture(scope="module")
def awe_raw_cache(tmp_path_factory):
    """The synthetic set on the real-valued ``awe_raw`` front end."""
    return _speech_cache(tmp_path_factory, "awe_raw")


@pytest.fixture(scope="module")
def awe_voice_cache(tmp_path_factory):
    """The synthetic set on ``awe_voice`` (the recommended front end: CMVN per inferred speaker)."""
    return _speech_cache(tmp_path_factory, "awe_voice")


# "uvac-vote": the voting ensemble of 2 restarts (trainables.restarts), predicted as it reported;
# "@awe_raw": a real-valued front end (inputs standardised with the train split's statistics, and
# UVAC's style factor), where the network must be rebuilt with the run's preset; "@awe_voice": a
# new clip assigned to one of the run's voices and normalised with that voice's statistics
# "-views": evaluated with test-time views (tta_views), which new clips get too
EXTRA = {"": [], "vote": ["--restarts", "2", "--restart-combine", "vote"],
         "views": ["--augment", "speed,warp,shift", "--tta-views", "3"]}


@pytest.fixture(scope="module", params=["cat_uvac", "uvac", "uvac-vote", "uvac@awe_raw", "cat_uvac@awe_raw",
                                        "uvac@awe_voice", "cat_uvac-views@awe_raw"])
def trained_run(request, tiny_cache, tmp_path_factory):
    from trainables.train import main as train_main

    name, _, frontend = request.param.partition("@")
    model, _, variant = name.partition("-")
    cache = request.getfixturevalue(f"{frontend}_cache") if frontend else tiny_cache
    extra = EXTRA[variant]
    run = tmp_path_factory.mktemp(f"run_{request.param.replace('@', '_')}")
    assert train_main(["--model", model, "--features", str(cache.dir), "--epochs", "1",
                       "--out", str(run), *TINY, *extra]) == 0
    return run, cache


def _fresh_copies(tiny_cache, run, tmp_path, n=4):
    """Re-synthesise n training clips: decode their source file and write a new WAV."""
    tab = pq.read_table(run / "assignments.parquet").to_pandas()
    train_rows = tab[tab["split"] == "train"].head(n)
    by_id = {r.id: r for r in tiny_cache.scan.records}
    out = {}
    for row in train_rows.itertuples():
        rec = by_id[row.id]
        data, sr = sf.read(str(rec.path), dtype="float32")
        dst = tmp_path / f"fresh_{row.id.replace('/', '_')}.wav"
        sf.write(str(dst), data, sr, subtype="FLOAT")
        out[str(dst)] = (int(row.cluster), np.asarray(row.probabilities, dtype=np.float64))
    return out


def test_fresh_wav_gets_the_training_cluster(trained_run, tmp_path, capsys):
    trained_run, cache = trained_run
    expected = _fresh_copies(cache, trained_run, tmp_path)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"this is not audio")
    out_csv = tmp_path / "pred.csv"
    assert main(["--run", str(trained_run), "--audio", str(tmp_path), "--out", str(out_csv)]) == 0
    cap = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert cap.out == out_csv.read_text()
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == len(expected) + 1
    for path, (cluster, train_probs) in expected.items():
        r = by_path[path]
        assert r["status"] == "ok"
        assert int(r["cluster"]) == cluster, (path, r)
        probs = json.loads(r["probabilities"])
        assert abs(sum(probs) - 1.0) < 1e-3 and int(np.argmax(probs)) == cluster
        # same front end, same float16 rounding as the cache: the same posterior, not just the argmax
        np.testing.assert_allclose(probs, train_probs, atol=2e-3)
    b = by_path[str(bad)]
    assert b["status"] == "rejected" and b["reason"]
    assert "inference part:" in cap.err
    missing = tmp_path / "missing.wav"
    assert main(["--run", str(trained_run), "--audio", str(missing)]) == 1  # nothing predicted
    assert "no such file" in capsys.readouterr().out


def test_inference_part_is_smaller_than_the_model(trained_run):
    p = Predictor(trained_run[0])
    used, total = inference_parameters(p.model)
    assert 0 < used < total  # the decoder is not needed to cluster


def test_paper_sized_uvac_inference_part():
    """UVAC paper: about 1.3M of 2M parameters are needed to cluster (AudioMNIST, 128 x 99)."""
    from trainables.config import resolve_config
    from trainables.models import build_model

    model = build_model(resolve_config({"model": "uvac", "n_clusters": 10}), 128, 99, preset=None)
    used, total = inference_parameters(model)
    assert 1.0e6 < used < 1.6e6 and 1.6e6 < total < 2.6e6, (used, total)


def test_bad_run_dir(tmp_path, capsys):
    assert main(["--run", str(tmp_path), "--audio", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_a_run_on_speaker_ids_or_without_its_voices_is_refused_clearly(trained_run, tmp_path):
    run, _ = trained_run
    cfg = json.loads((run / "config.json").read_text())
    if cfg["preset"]["normalisation"] != "voice":
        assert "voice_model" not in cfg
        return
    assert len(cfg["voice_model"]["names"]) == cfg["preset"]["voices"]
    import shutil

    old = tmp_path / "old_run"
    shutil.copytree(run, old)
    (old / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "voice_model"}))
    with pytest.raises(ValueError, match="no 'voice_model'"):
        Predictor(old)
    speaker = tmp_path / "speaker_run"
    shutil.copytree(run, speaker)
    preset = {**cfg["preset"], "name": "awe_speaker", "normalisation": "speaker", "voices": 0}
    (speaker / "config.json").write_text(json.dumps({**cfg, "preset": preset}))
    with pytest.raises(ValueError, match="a new clip's speaker is unknown"):
        Predictor(speaker)
