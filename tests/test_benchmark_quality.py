"""benchmarks.quality keeps what it measured: runs.json after every run, --resume runs only the rest."""
from benchmarks.quality_runs import Job, load_runs, resolved_config, resume_runs, same_training, save_runs


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

    kept, todo, _ = resume_runs([suite, uvac, cat], tmp_path / "runs.json")
    assert [j for j, _ in kept] == [suite] and todo == [uvac, cat]


def test_resume_ignores_a_saved_run_whose_config_changed(tmp_path):
    suite, uvac, _ = _jobs()
    save_runs([(uvac, {"status": "complete", "reason": "", "metrics": {}, "time_s": 1.0})], tmp_path)
    changed = Job(**{**uvac.__dict__, "config": {**uvac.config, "epochs": 60}})
    kept, todo, _ = resume_runs([suite, changed], tmp_path / "runs.json")
    assert kept == [] and todo == [suite, changed]


def test_resume_reruns_a_run_whose_recipe_changed_since(tmp_path):
    """A recipe row's job config only names the recipe: the run counts only if the config it resolved to
    then (saved as ``resolved``) is the one it resolves to now."""
    _, uvac, cat = _jobs()
    now = resolved_config(uvac)
    assert now["lr_start"] == 5e-4 and now["model"] == "uvac" and resolved_config(_jobs()[0]) == {}
    then = {**now, "restarts": now["restarts"] + 2}  # as if the recipe had changed since
    done = {"status": "complete", "reason": "", "metrics": {}, "time_s": 1.0}
    save_runs([(uvac, {**done, "resolved": then}), (cat, {**done, "resolved": resolved_config(cat)})], tmp_path)
    kept, todo, lines = resume_runs([uvac, cat], tmp_path / "runs.json")
    assert [j for j, _ in kept] == [cat] and todo == [uvac]
    assert len(lines) == 2 and "another resolved config" in lines[0] and "runs.before-resume-" in lines[1]

    save_runs([(uvac, done)], tmp_path)  # saved before the resolved config was recorded: kept, and said
    kept, todo, lines = resume_runs([uvac], tmp_path / "runs.json")
    assert [j for j, _ in kept] == [uvac] and todo == [] and "without their resolved config" in lines[0]


def test_a_key_added_since_a_run_was_saved_keeps_the_run_only_while_it_is_at_its_default(tmp_path):
    """A run saved before a knob existed trained as the knob's default does (keys are added with a
    default that keeps what the code did), so resuming keeps it; set to anything else, it runs again."""
    _, uvac, _ = _jobs()
    now = resolved_config(uvac)
    assert now["self_label"] == 0.0  # a key added after runs were saved, off by default
    before = {k: v for k, v in now.items() if k != "self_label"}
    assert same_training(before, now) and same_training(now, now)
    assert not same_training(before, {**now, "self_label": 3.0})
    assert not same_training({**before, "lr_start": 1e-3}, now)  # a recorded key that differs
    assert not same_training({**now, "a_key_removed_since": 1}, now)
    done = {"status": "complete", "reason": "", "metrics": {}, "time_s": 1.0}
    save_runs([(uvac, {**done, "resolved": before})], tmp_path)
    kept, todo, lines = resume_runs([uvac], tmp_path / "runs.json")
    assert [j for j, _ in kept] == [uvac] and todo == [] and lines == []
    label = Job(**{**uvac.__dict__, "config": {**uvac.config, "self_label": 3.0, "augment": "shift"}})
    save_runs([(label, {**done, "resolved": before})], tmp_path)
    kept, todo, _ = resume_runs([label], tmp_path / "runs.json")
    assert kept == [] and todo == [label]


def test_resume_keeps_the_saved_runs_it_does_not_carry_over_in_a_copy(tmp_path):
    """Resuming with fewer seeds, or after a recipe changed, must not lose the runs it leaves out: the
    next save rewrites runs.json without them, so the file as it was is copied aside first."""
    suite, uvac, cat = _jobs()
    done = {"status": "complete", "reason": "", "metrics": {"test/acc": 0.7}, "time_s": 2.0}
    save_runs([(suite, done), (uvac, {**done, "resolved": resolved_config(uvac)}),
               (cat, {**done, "resolved": resolved_config(cat)})], tmp_path)
    before = (tmp_path / "runs.json").read_text()

    kept, todo, lines = resume_runs([suite, uvac], tmp_path / "runs.json")  # cat no longer planned
    assert [j for j, _ in kept] == [suite, uvac] and todo == []
    copies = sorted(tmp_path.glob("runs.before-resume-*.json"))
    assert len(copies) == 1 and copies[0].read_text() == before
    assert "1 saved run(s) not carried over (1 not planned now" in lines[-1] and copies[0].name in lines[-1]
    save_runs(kept, tmp_path)  # what the benchmark does next: cat is gone from runs.json, not from the copy
    assert [j for j, _ in load_runs(tmp_path / "runs.json")] == [suite, uvac]
    assert [j for j, _ in load_runs(copies[0])] == [suite, uvac, cat]

    resume_runs([suite], tmp_path / "runs.json")  # a second resume the same second: a second copy
    assert len(list(tmp_path.glob("runs.before-resume-*.json"))) == 2
    _, _, lines = resume_runs([suite, uvac], tmp_path / "runs.json")  # everything carried over: no copy
    assert lines == [] and len(list(tmp_path.glob("runs.before-resume-*.json"))) == 2


def test_a_jobs_resolved_config_is_the_one_its_split_trains_with():
    """benchmarks.quality trains a job with ``split_scheme`` set to its split (SPEAKER_DISJOINT's values
    apply on the speaker-disjoint one), so the recorded ``resolved`` config says the same."""
    random = Job("neural", "random", 0, {"model": "uvac", "recipe": "recommended"}, "UVAC", frontend="awe_voice")
    group = Job(**{**random.__dict__, "split": "group"})
    assert resolved_config(random)["split_scheme"] == "random" and resolved_config(group)["split_scheme"] == "group"
    assert resolved_config(random)["prior_styles"] == 4 and resolved_config(group)["prior_styles"] == 0


def test_resume_without_saved_runs_runs_everything(tmp_path):
    jobs = list(_jobs())
    assert resume_runs(jobs, tmp_path / "runs.json") == ([], jobs, [])


def _suite(split, seed, rows):
    job = Job("suite", split, seed, {"frontends": ["awe_raw"]}, "classical baselines", frontend="awe_raw")
    return job, {"status": "complete", "rows": [
        {"name": n, "label": n, "side_information": side, "metrics": {"val/acc": v, "test/acc": t}}
        for n, side, v, t in rows]}


def test_strongest_baseline_with_and_without_speaker_ids():
    """Without speaker ids the strongest is chosen among baselines that use none; the models on
    speaker-normalised features are compared with the strongest that uses them (same normalisation)."""
    from benchmarks.quality_tables import baseline_rows, baseline_summary, strongest_baseline

    rows = [("awe_gmm", False, 0.57, 0.61), ("factorial", False, 0.64, 0.60), ("awe_speaker_kmeans", True, 0.60, 0.62)]
    results = [_suite("random", s, rows) for s in range(2)]
    b = baseline_rows(results, "random")
    assert strongest_baseline(b) == "factorial"
    assert strongest_baseline(b, side_information=True) == "awe_speaker_kmeans"
    marks = {r["baseline"]: r for r in baseline_summary(results, "random")}
    assert "`factorial` **(strongest)**" in marks and "`awe_speaker_kmeans` (strongest with speaker ids)" in marks
    assert marks["`awe_gmm`"]["test ACC %"] == "61.00 ± 0.00"


def test_candidates_are_checked_before_any_run_and_go_to_the_models_owning_their_keys():
    import pytest

    from benchmarks.quality import parse_candidates
    from trainables.config_keys import ConfigError

    got = parse_candidates(["head_init=fit head_warmup_epochs=4", "lr_start=1e-3"], ["uvac", "cat_uvac"])
    assert got == [("cat_uvac", {"head_init": "fit", "head_warmup_epochs": 4}),
                   ("uvac", {"lr_start": 1e-3}), ("cat_uvac", {"lr_start": 1e-3})]
    assert parse_candidates(["channels=8,16,32 d_z=12"], ["uvac"]) == [("uvac", {"channels": "8,16,32", "d_z": 12})]
    for spec, words in [("head_inti=fit", "unknown config key 'head_inti'"), ("head_init=fitt", "head_init"),
                        ("head_warmup_epochs=-1", "head_warmup_epochs"), ("epochs=3", "set by the benchmark"),
                        ("head_init", "KEY=VALUE")]:
        with pytest.raises(ConfigError, match=words):
            parse_candidates([spec], ["cat_uvac"])
    with pytest.raises(ConfigError, match="no model of --models uvac"):
        parse_candidates(["head_init=fit"], ["uvac"])
    assert parse_candidates(["frontend=awe_raw style_clusters=8"], ["cat_uvac"]) == \
        [("cat_uvac", {"frontend": "awe_raw", "style_clusters": 8})]
    with pytest.raises(ConfigError, match="unknown front end 'awe_rwa'"):
        parse_candidates(["frontend=awe_rwa"], ["cat_uvac"])
    # what the candidate's front end cannot take is refused here too, not in a failed run
    assert parse_candidates(["voices=5"], ["uvac"]) == [("uvac", {"voices": 5})]  # awe_voice: the recipe's
    with pytest.raises(ConfigError, match="front end 'awe' has band normalisation"):
        parse_candidates(["frontend=awe voices=5"], ["uvac"])
    with pytest.raises(ConfigError, match="style_clusters needs real-valued features"):
        parse_candidates(["frontend=audiomnist style_clusters=4"], ["uvac"])


def test_a_candidate_with_a_front_end_trains_on_that_cache_and_its_cache_is_built():
    from benchmarks.quality import parse_candidates, parser, plan_jobs

    a = parser().parse_args(["--seeds", "1", "--ablation-seeds", "0", "--no-speaker", "--models", "cat_uvac"])
    a.splits, a.models, a.recipes = ["random"], ["cat_uvac"], ["recommended"]
    from trainables.config import recipe_frontend

    own = recipe_frontend("recommended", "cat_uvac")
    a.frontend_default, a.model_frontends = "audiomnist", [own, "mfcc"]
    a.candidates = parse_candidates(["frontend=mfcc style_clusters=3"], a.models)
    cand = [j for j in plan_jobs(a) if j.config.get("style_clusters") == 3]
    assert len(cand) == 1 and cand[0].frontend == cand[0].config["frontend"] == "mfcc"
    assert cand[0].label == "Cat. UVAC (recommended, frontend=mfcc style_clusters=3)"
    rec = [j for j in plan_jobs(a) if j.kind == "neural" and j not in cand]
    assert [j.frontend for j in rec] == [own] != ["mfcc"]


def test_the_benchmark_measures_the_networks_the_recipe_ships_with_unless_asked_for_narrower_ones():
    """By default a model trains with its own widths (what ``trainables.train`` and ``study.launch`` give
    a user: the papers' 16,32,64,128 channels and 128 GRU units); ``--channels`` / ``--gru-hidden``
    set other widths for every run."""
    from benchmarks.quality import parser, plan_jobs
    from trainables.config import resolve_config

    def neural_jobs(*flags):
        a = parser().parse_args(["--seeds", "1", "--ablation-seeds", "0", "--no-speaker", "--models", "uvac", *flags])
        a.splits, a.models, a.recipes, a.candidates = ["random"], ["uvac"], ["recommended"], []
        a.frontend_default, a.model_frontends = "audiomnist", ["awe_voice"]
        return [j for j in plan_jobs(a) if j.kind == "neural"]

    (own,) = neural_jobs()
    assert "channels" not in own.config and "gru_hidden" not in own.config
    shipped = resolve_config({"model": "uvac", "recipe": "recommended", "frontend": "awe_voice"})
    assert resolved_config(own)["channels"] == shipped["channels"] == "16,32,64,128"
    assert resolved_config(own)["gru_hidden"] == shipped["gru_hidden"] == 128
    (narrow,) = neural_jobs("--channels", "8,16,32,64", "--gru-hidden", "64")
    assert (resolved_config(narrow)["channels"], resolved_config(narrow)["gru_hidden"]) == ("8,16,32,64", 64)


def test_a_candidate_is_a_main_row_on_every_split_and_seed_beside_recommended(tmp_path):
    from benchmarks.quality import parse_candidates, parser, plan_jobs

    a = parser().parse_args(["--seeds", "2", "--ablation-seeds", "0", "--no-speaker", "--models", "cat_uvac"])
    a.splits, a.models, a.recipes = ["random", "group"], ["cat_uvac"], ["recommended"]
    a.frontend_default, a.model_frontends = "audiomnist", ["awe"]
    a.candidates = parse_candidates(["head_init=fit"], a.models)
    jobs = [j for j in plan_jobs(a) if j.kind == "neural"]
    cand = [j for j in jobs if j.config.get("head_init") == "fit"]
    assert len(jobs) == 8 and len(cand) == 4
    assert {(j.split, j.seed) for j in cand} == {(s, n) for s in ("random", "group") for n in (0, 1)}
    assert all(j.group == "main" and j.label == "Cat. UVAC (recommended, head_init=fit)" and j.config["recipe"] ==
               "recommended" for j in cand)


def test_margins_show_validation_beside_test():
    from benchmarks.quality_runs import Job
    from benchmarks.quality_tables import margin_rows

    results = [_suite("random", s, [("factorial", False, 0.60, 0.58)]) for s in range(2)]
    for s, (v, t) in enumerate([(0.70, 0.61), (0.50, 0.55)]):
        job = Job("neural", "random", s, {"model": "cat_uvac"}, "Cat. UVAC")
        results.append((job, {"status": "complete", "metrics": {"val/acc": v, "test/acc": t}}))
    rows, best = margin_rows(results, "random")
    assert best == "factorial"
    model = rows[1]
    assert model["val margin (points)"] == 0.0 and model["margin (points)"] == 0.0 and model["seeds above"] == "1/2"
    assert model["val ACC %"].startswith("60.00 ±") and rows[0]["val ACC %"] == "60.00 ± 0.00"


def test_models_on_a_speaker_normalised_front_end_are_measured_against_baselines_with_speaker_ids():
    from benchmarks.quality_runs import Job
    from benchmarks.quality_tables import main_uses_speaker_ids, margin_rows

    rows = [("factorial", False, 0.64, 0.60), ("awe_speaker_fair", True, 0.77, 0.78)]
    results = [_suite("random", s, rows) for s in range(2)]
    for front in ("awe_raw", "awe_speaker"):
        res = results + [(Job("neural", "random", s, {"model": "uvac"}, f"UVAC {front}", frontend=front),
                          {"status": "complete", "metrics": {"val/acc": 0.7, "test/acc": 0.7}}) for s in range(2)]
        side = main_uses_speaker_ids(res, "random")
        assert side == (front == "awe_speaker")
        assert margin_rows(res, "random", side_information=side)[1] == ("awe_speaker_fair" if side else "factorial")


def test_the_ablation_shows_validation_beside_test_paired_by_seed():
    from benchmarks.quality_runs import Job
    from benchmarks.quality_tables import ablation_rows

    results = []
    for s, (v, t) in enumerate([(0.70, 0.60), (0.60, 0.50)]):
        results.append((Job("neural", "random", s, {"model": "uvac"}, "UVAC (recommended)"),
                        {"status": "complete", "metrics": {"val/acc": v, "test/acc": t}}))
    for s, (v, t) in enumerate([(0.60, 0.65), (0.40, 0.45)]):  # switching it off loses on validation only
        results.append((Job("neural", "random", s, {"model": "uvac"}, "UVAC: lam=1.0", "ablation"),
                        {"status": "complete", "metrics": {"val/acc": v, "test/acc": t}}))
    base, off = ablation_rows(results, {"uvac": "UVAC"})
    assert base["Setting"] == "UVAC (recommended), seeds [0, 1]" and base["runs"] == 2
    assert off["Setting"] == "UVAC, off: lam=1.0"
    assert off["val difference (points)"] == -15.0 and off["difference (points)"] == 0.0
    assert off["val ACC %"].startswith("50.00 ±") and base["test ACC %"].startswith("55.00 ±")


def test_the_ablation_leaves_out_keys_without_effect_under_the_recipe():
    """Categorical UVAC's recipe uses the fully connected networks, where ``pool`` does nothing: no
    ablation row switches it (it once cost 3 runs that repeated the recipe exactly); the network
    family itself is ablated. Under the convolutional encoder ``pool`` counts again."""
    from benchmarks.quality import ablation_settings
    from features.presets import PRESETS
    from trainables.config import all_keys, resolve_config

    switched = [set(s) for s in ablation_settings("cat_uvac", PRESETS["awe"])]
    assert not any("pool" in s for s in switched) and {"encoder"} in switched
    pool = all_keys()["pool"]
    assert not pool.applies(resolve_config({"model": "cat_uvac", "encoder": "mlp"}))
    assert pool.applies(resolve_config({"model": "cat_uvac", "encoder": "conv"}))


def test_the_speaker_variant_of_a_front_end_replaces_its_normalisation_by_the_speaker_ids():
    from benchmarks.quality import speaker_variant

    assert speaker_variant("awe_voice") == speaker_variant("awe_raw") == speaker_variant("awe") == "awe_speaker"
    assert speaker_variant("logmel_voice") == "logmel_speaker" and speaker_variant("mfcc_clip") is None


def test_a_candidates_voice_count_reaches_the_suite():
    from benchmarks.quality import parse_candidates, parser, plan_jobs

    a = parser().parse_args(["--seeds", "1", "--ablation-seeds", "0", "--no-speaker", "--models", "uvac"])
    a.splits, a.models, a.recipes = ["random"], ["uvac"], ["recommended"]
    a.frontend_default, a.model_frontends = "audiomnist", ["awe_voice"]
    a.candidates = parse_candidates(["voices=6", "voices=8 d_z=12", "d_z=8"], a.models)
    suite = [j for j in plan_jobs(a) if j.kind == "suite"]
    assert len(suite) == 1 and suite[0].config == {"frontends": ["awe_voice"], "voices": [6, 8]}
    a.candidates = parse_candidates(["d_z=8"], a.models)
    assert [j.config for j in plan_jobs(a) if j.kind == "suite"] == [{"frontends": ["awe_voice"]}]  # as before


def test_the_ablation_on_a_per_speaker_front_end_switches_off_the_per_speaker_values_too():
    """The recipe's front end normalises per (inferred) speaker, where SPEAKER_NORMALISED's values apply:
    the vote, the speaker independence, the aligned starts are ablated there, one group each; on a front
    end without speakers they are not part of the recipe and no row switches them."""
    from benchmarks.quality import ablation_settings
    from features.presets import PRESETS

    voice = {m: [set(s) for s in ablation_settings(m, PRESETS["awe_voice"])] for m in ("uvac", "cat_uvac")}
    for m, rows in voice.items():
        assert {"restarts", "restart_combine"} in rows and {"speaker_independence"} in rows, m
    assert {"head_init", "head_warmup_epochs"} in voice["cat_uvac"] and {"neighbours"} in voice["cat_uvac"]
    off = ablation_settings("cat_uvac", PRESETS["awe_voice"])
    assert {"restarts": 1, "restart_combine": "best"} in off  # the paper's values
    plain = [set(s) for s in ablation_settings("cat_uvac", PRESETS["awe"])]
    assert not any(s & {"restarts", "speaker_independence", "head_init", "neighbours"} for s in plain)


def test_each_recipe_trains_as_long_as_it_was_measured_unless_epochs_are_given():
    """``--epochs 0`` (the default): each model and recipe at trainables.config.recipe_epochs (categorical
    UVAC's recommended 60, the rest 30); ``--epochs N``: every run N."""
    from benchmarks.quality import parser, plan_jobs
    from trainables.config import BENCHMARK_EPOCHS, recipe_epochs

    def epochs(*flags):
        a = parser().parse_args(["--seeds", "1", "--ablation-seeds", "1", *flags])
        a.splits, a.models, a.recipes, a.candidates = ["random"], ["uvac", "cat_uvac"], ["paper", "recommended"], []
        a.frontend_default, a.model_frontends = "audiomnist", ["awe_voice", "audiomnist"]
        return {(j.config["model"], j.config["recipe"], j.group): j.config["epochs"]
                for j in plan_jobs(a) if j.kind == "neural"}

    default = epochs()
    assert recipe_epochs("recommended", "cat_uvac") == 60 and recipe_epochs("recommended", "uvac") == BENCHMARK_EPOCHS
    assert default[("cat_uvac", "recommended", "main")] == default[("cat_uvac", "recommended", "ablation")] == 60
    assert default[("cat_uvac", "recommended", "speaker")] == 60
    assert default[("uvac", "recommended", "main")] == default[("cat_uvac", "paper", "main")] == 30
    assert set(epochs("--epochs", "7").values()) == {7}


def test_ablate_runs_the_settings_it_names_in_its_order_and_refuses_a_typo_before_any_run(tmp_path, capsys):
    """``--ablate encoder,speaker_independence,restart_combine``: the three settings switching those keys
    back, in that order (a setting is named by any of its keys: ``restart_combine`` names the vote);
    a key the ablation does not switch stops the benchmark with exit 2, naming the keys it does."""
    from benchmarks.quality import main, parser, plan_jobs

    def ablation_labels(*flags):
        a = parser().parse_args(["--seeds", "1", "--ablation-seeds", "2", "--no-speaker", "--frontend", "awe_speaker",
                                 *flags])
        a.splits, a.models, a.recipes, a.candidates = ["random"], ["cat_uvac"], ["recommended"], []
        a.frontend_default, a.model_frontends = "audiomnist", ["awe_speaker"]
        return [j.label for j in plan_jobs(a) if j.group == "ablation"]

    every = ablation_labels()
    chosen = ablation_labels("--ablate", "encoder,speaker_independence,restart_combine")
    assert chosen == ["Cat. UVAC: encoder=conv"] * 2 + ["Cat. UVAC: speaker_independence=0.0"] * 2 + [
        "Cat. UVAC: restarts=1, restart_combine=best"] * 2
    assert set(chosen) < set(every) and every.index(chosen[-1]) < every.index(chosen[0])  # the order is --ablate's
    rc = main(["--root", str(tmp_path), "--models", "cat_uvac", "--recipes", "recommended", "--frontend",
               "awe_speaker", "--ablate", "encoder,encodr", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "encodr not switched by the ablation" in err and "speaker_independence" in err
    assert not (tmp_path / "out").exists()


def test_each_run_keeps_the_commit_and_installation_that_produced_it(tmp_path):
    """provenance(): the checkout's commit, how many tracked files differ from it, a hash of the installed
    distributions; saved with each run and read back; the report's rows tell runs of two commits apart."""
    import subprocess

    import torch

    from benchmarks.quality_runs import provenance, provenance_rows

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "f.py").write_text("a = 1\n")
    git("init", "-q")
    git("add", "f.py")
    git("commit", "-q", "-m", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    clean = provenance(tmp_path)
    assert clean["commit"] == head and clean["changed_files"] == 0
    assert len(clean["installation"]) == 12 and clean["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    (tmp_path / "f.py").write_text("a = 2\n")
    dirty = provenance(tmp_path)
    assert dirty["changed_files"] == 1 and dirty["installation"] == clean["installation"]
    outside = provenance(tmp_path / "nowhere")
    assert outside["commit"] == "unknown" and outside["changed_files"] is None

    done = {"status": "complete", "reason": "", "metrics": {}, "time_s": 1.0}
    jobs = [Job("labels", "random", s, label="labels as clusters") for s in range(3)]
    save_runs([(jobs[0], {**done, "provenance": clean}), (jobs[1], {**done, "provenance": dirty}),
               (jobs[2], done)], tmp_path / "out")
    loaded = load_runs(tmp_path / "out" / "runs.json")
    assert loaded[0][1]["provenance"] == clean and "provenance" not in loaded[2][1]
    rows = provenance_rows(loaded + [(jobs[0], {**done, "provenance": clean})])
    assert [(r["commit"], r["changed files"], r["runs"]) for r in rows] == [
        (head[:10], 0, 2), (head[:10], 1, 1), ("unrecorded", "", 1)]


def test_the_smoke_benchmark_keeps_each_runs_provenance_and_resumes_without_training_again(tmp_path, capsys):
    """End to end on the real FSDD recordings (--smoke-test: 120 clips, 1 epoch): every run in runs.json
    names the commit that produced it, the report has its provenance table, and --resume runs nothing."""
    import json
    from pathlib import Path

    from benchmarks.quality import main
    from benchmarks.quality_runs import provenance

    fsdd = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
    assert (fsdd / "recordings").is_dir(), f"the real FSDD recordings are expected at {fsdd}"
    flags = ["--root", str(fsdd), "--features-out", str(tmp_path / "features"), "--out", str(tmp_path / "out"),
             "--smoke-test", "--models", "cat_uvac", "--recipes", "recommended", "--splits", "random",
             "--no-speaker", "--jobs", "1"]
    assert main(flags) == 0
    runs = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert {r["kind"] for r in runs} == {"labels", "suite", "neural"}
    assert {r["provenance"]["commit"] for r in runs} == {provenance()["commit"]}
    assert "### Provenance" in (tmp_path / "out" / "quality.md").read_text()
    capsys.readouterr()
    assert main([*flags, "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"resumed: {len(runs)} run(s) kept from" in out and ", 0 to run" in out
