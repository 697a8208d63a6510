"""benchmarks.quality keeps what it measured: runs.json after every run, --resume runs only the rest."""
from benchmarks.quality import Job, load_runs, resume_runs, save_runs


def _jobs():
    suite = Job("suite", "random", 0, {"frontends": ["awe_raw", "awe"]}, "classical baselines", frontend="awe_raw")
    uvac = Job("neural", "random", 0, {"model": "uvac", "epochs": 30, "lr_start": 5e-4}, "UVAC", "ablation", "awe_raw")
    cat = Job("neural", "random", 1, {"model": "cat_uvac", "epochs": 30}, "Cat. UVAC", frontend="awe")
    return suite, uvac, cat


def test_resume_keeps_completed_runs_and_reruns_failed_and_missing(tmp_path):
    suite, uvac, cat = _jobs()
    done = {"status": "complete", "reason": "", "metrics": {"test/acc": 0.6}, "time_s": 3.0}
    failed = {"status": "failed", "reason": "worker died", "metrics": {}, "time_s": 1.0}
    save_runs([(suite, done), (uvac, failed)], tmp_path)
    loaded = load_runs(tmp_path / "runs.json")
    assert [j for j, _ in loaded] == [suite, uvac] and loaded[0][1]["metrics"] == {"test/acc": 0.6}

    kept, todo = resume_runs([suite, uvac, cat], tmp_path / "runs.json")
    assert [j for j, _ in kept] == [suite] and todo == [uvac, cat]


def test_resume_ignores_a_saved_run_whose_config_changed(tmp_path):
    suite, uvac, _ = _jobs()
    save_runs([(uvac, {"status": "complete", "reason": "", "metrics": {}, "time_s": 1.0})], tmp_path)
    changed = Job(**{**uvac.__dict__, "config": {**uvac.config, "epochs": 60}})
    kept, todo = resume_runs([suite, changed], tmp_path / "runs.json")
    assert kept == [] and todo == [suite, changed]


def test_resume_without_saved_runs_runs_everything(tmp_path):
    jobs = list(_jobs())
    assert resume_runs(jobs, tmp_path / "runs.json") == ([], jobs)
