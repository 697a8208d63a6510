"""Search spaces, objectives, status mapping and the CLI's printing paths (no Ray)."""
from __future__ import annotations

import optuna
import pytest

from study.launch import main
from study.objectives import classify, objective_values, parse_objectives, settle
from study.spaces import MLP_HIDDEN_CHOICES, SPACES, describe_space, get_space, record_space
from features.presets import PRESETS
from trainables.config import RECIPES, all_keys, check_frontend, resolve_config


@pytest.fixture()
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db", study_name="s",
                               directions=["maximize", "maximize"],
                               sampler=optuna.samplers.RandomSampler(seed=1))


@pytest.mark.parametrize("name", sorted(SPACES))
def test_space_draws_resolve_to_valid_configs(study, name):
    space = get_space(name, epochs=5)
    for _ in range(25):
        trial = study.ask()
        consts = space(trial) or {}
        config = {**trial.params, **consts}
        assert config["model"] == name
        resolved = resolve_config({**config, "epochs": 5})  # raises on any invalid value
        if "lr_start" in config:
            assert config["lr_end"] < config["lr_start"]
        if name == "cat_uvac" and config["tau_kind"] != "constant":
            assert config["tau_end"] <= config["tau_start"]
            assert 1 <= config["tau_anneal_epochs"] <= 5
        assert resolved["model"] == name
        study.tell(trial, [0.0, 0.0])


SPEECH_FRONTENDS = ("mfcc", "mfcc_raw", "logmel", "awe", "awe_raw", "awe_speaker")


@pytest.mark.parametrize("name", ["uvac", "cat_uvac"])
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_space_draws_fit_every_recipe_and_front_end(study, name, recipe):
    """What a study on speech runs: a draw over several front ends, on top of a recipe. A recipe's
    values for keys the draw leaves out (``recommended``: a consistency term, a style factor) must
    not make the trial invalid (a study with augment=none draws failed on every front end)."""
    space = get_space(name, epochs=30, frontends=SPEECH_FRONTENDS)
    seen = set()
    for _ in range(40):
        trial = study.ask()
        consts = space(trial) or {}
        config = {**trial.params, **consts, "recipe": recipe, "epochs": 30}
        preset = PRESETS[config["frontend"]]
        resolved = resolve_config(config, preset=preset)  # raises on an invalid combination
        check_frontend(resolved, preset)
        if config.get("augment") == "none" and config.get("neighbours") == 0:  # no view at all
            assert resolved["consistency"] == "none" and resolved["overcluster"] == 0 and resolved["contrastive"] == 0
            assert resolved["self_label"] == 0
        if config.get("augment") == "none":  # test-time views are the augmenter's
            assert resolved["tta_views"] == 0
        if preset.bounded:
            assert resolved["style_clusters"] == 0
        seen.add((config.get("augment") == "none" and config.get("neighbours") == 0, preset.bounded))
        study.tell(trial, [0.0, 0.0])
    assert (True, False) in seen and (False, False) in seen  # both branches were drawn


@pytest.mark.parametrize("name", ["uvac", "cat_uvac"])
def test_spaces_draw_a_key_exactly_where_it_has_an_effect(study, name):
    """The spaces state their conditionals themselves (define-by-run: ``pool`` only with
    ``encoder conv``); the keys state them too (``Key.applies_when``, docs/CONFIG.md). They must
    agree: a key a space searches is drawn in a trial exactly when it applies to that trial's config,
    so that no trial spends a dimension on a key without effect and none silently misses one."""
    space = get_space(name, epochs=30, frontends=SPEECH_FRONTENDS)
    conditional = {k: key for k, key in all_keys().items() if key.applies_when is not None}
    draws = []
    for _ in range(60):
        trial = study.ask()
        consts = space(trial) or {}
        draws.append((set(trial.params), resolve_config({**trial.params, **consts, "epochs": 30},
                                                        preset=PRESETS[trial.params["frontend"]])))
        study.tell(trial, [0.0, 0.0])
    searched = {k for params, _ in draws for k in params} & set(conditional)
    assert {"pool", "mlp_hidden"} <= searched  # what the check is about is searched at all
    for params, cfg in draws:
        for k in searched:
            assert (k in params) == conditional[k].applies(cfg), (k, cfg["encoder"])
    assert {cfg["encoder"] for _, cfg in draws} == {"conv", "mlp"}  # both sides of the condition seen


def test_cat_uvac_searches_what_the_issue_asks():
    params, consts = record_space("cat_uvac", epochs=7)
    names = {p["name"] for p in params}
    assert {"tau_kind", "tau_start", "tau_end", "tau_anneal_epochs", "lam", "d_z", "divergence",
            "lr_start", "lr_end"} <= names
    # the stabilisers, so a study maps what each costs (issue: clustering quality)
    assert {"likelihood", "dec_bias_init", "bn_reestimate", "pool", "marginal_entropy_weight", "kl_z_weight",
            "gumbel_hard"} <= names
    lam = next(p for p in params if p["name"] == "lam")
    assert lam["log"] and lam["high"] / lam["low"] >= 100
    like = next(p for p in params if p["name"] == "likelihood")
    assert set(like["choices"]) == {"gaussian", "bernoulli", "gaussian_learned", "gaussian_learned_freq"}
    div = next(p for p in params if p["name"] == "divergence")
    assert set(div["choices"]) == {"euc", "is", "kl"}
    anneal = next(p for p in params if p["name"] == "tau_anneal_epochs")
    assert anneal["high"] == 7 and anneal["when"]  # conditional on a non-constant schedule
    head = next(p for p in params if p["name"] == "head_warmup_epochs")
    assert head["high"] == 3 and head["when"]  # the head's warm-up only where the head is fitted
    uvac_names = {p["name"] for p in record_space("uvac")[0]}
    assert not any(n.startswith("tau") for n in uvac_names)
    assert {"prior_init", "prior_warmup_epochs", "likelihood", "bn_reestimate", "pool"} <= uvac_names
    # the recorded draw takes first choices: no views, so the space switches their consistency term off
    assert consts == {"model": "cat_uvac", "consistency": "none", "overcluster": 0, "self_label": 0.0,
                      "contrastive": 0.0, "tta_views": 0}


@pytest.mark.parametrize("space", ["uvac", "cat_uvac"])
def test_speaker_independence_is_searched_only_where_the_front_end_uses_speaker_ids(space):
    for per_speaker in ("awe_speaker", "awe_voice"):  # given or inferred speakers
        params, _ = record_space(space, frontends=[per_speaker])
        si = next(p for p in params if p["name"] == "speaker_independence")
        assert 0.0 in si["choices"] and max(si["choices"]) > 0
    params, consts = record_space(space, frontends=["awe"])
    assert "speaker_independence" not in {p["name"] for p in params} and consts["speaker_independence"] == 0.0


def test_describe_space_is_derived_from_the_function():
    text = describe_space("gmm")
    assert "gmm_covariance" in text and "tied" in text and "seed" in text
    text = describe_space("cat_uvac", epochs=4)
    assert "tau_anneal_epochs" in text and "int [1, 4]" in text and "only when tau_kind=" in text
    # a parameter of the default pass that another choice drops is marked as well
    pool = next(line for line in text.splitlines() if line.strip().startswith("pool "))
    assert "not when encoder=mlp" in pool
    # and one that only another choice asks for: the fully connected networks' widths
    hidden = next(line for line in text.splitlines() if line.strip().startswith("mlp_hidden "))
    assert "only when encoder=mlp" in hidden


def test_every_searched_mlp_width_resolves_and_builds():
    import torch

    from trainables.models.mlp_blocks import MLPEncoder, parse_hidden

    for hidden in MLP_HIDDEN_CHOICES:
        cfg = resolve_config({"model": "cat_uvac", "encoder": "mlp", "mlp_hidden": hidden})
        widths = parse_hidden(cfg["mlp_hidden"])
        assert list(widths) == [int(w) for w in hidden.split(",")]
        assert MLPEncoder(1, 13, 10, widths).eval()(torch.randn(2, 1, 13, 10)).shape == (2, widths[-1])


def test_cli_lists_and_shows_spaces(capsys):
    assert main(["--list-spaces"]) == 0
    out = capsys.readouterr().out
    for name in SPACES:
        assert name in out
    assert main(["--show-space", "uvac"]) == 0
    assert "divergence" in capsys.readouterr().out
    assert main(["--show-space", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown space 'nope'") and err.count("\n") == 1


def test_cli_rejects_bad_objectives_in_one_line(capsys):
    assert main(["--objective", "test/acc:max"]) == 2
    assert "validation split only" in capsys.readouterr().err
    assert main(["--objective", "val/acc:up"]) == 2
    assert "max or min" in capsys.readouterr().err
    assert main(["--num-samples", "0"]) == 2
    assert "--num-samples" in capsys.readouterr().err


def test_objectives_defaults_and_directions():
    objs = parse_objectives(None)
    assert [str(o) for o in objs] == ["val/silhouette_z:max", "val/acc:max"]
    objs = parse_objectives(["val/dbi_z", "val/nmi", "val/chi_z:max"])
    assert [o.mode for o in objs] == ["min", "max", "max"]
    with pytest.raises(ValueError):
        parse_objectives(["val/acc", "val/acc:min"])


def test_status_mapping():
    assert classify(None, error=True)[0] == "failed"
    assert classify({"val/acc": 0.9, "epoch": 2})[0] == "pruned"  # no final report
    assert classify({"trial_status": "complete", "val/acc": 0.5}) == ("complete", "")
    assert classify({"trial_status": "diverged", "trial_reason": "loss nan"}) == ("diverged", "loss nan")
    objs = parse_objectives(["val/acc", "val/silhouette_z"])
    assert objective_values({"val/acc": 0.5, "val/silhouette_z": 0.1}, objs) == [0.5, 0.1]
    assert objective_values({"val/acc": 0.5, "val/silhouette_z": float("nan")}, objs) is None
    assert objective_values({"val/acc": 0.5}, objs) is None




def test_settle_counts_a_collapse_as_failed():
    objs = parse_objectives(["val/silhouette_z:max", "val/acc:max"])
    done = {"val/acc": 0.5, "val/silhouette_z": 0.1, "trial_status": "complete", "trial_reason": ""}
    assert settle(done, objs) == ("complete", "", [0.1, 0.5])
    collapsed = {**done, "val/silhouette_z": float("nan")}
    status, reason, values = settle(collapsed, objs)
    assert (status, values) == ("failed", None) and "not finite" in reason
    assert settle({"val/acc": 0.5, "epoch": 1}, objs)[0] == "pruned"  # no final report: stopped early
    assert (settle({**done, "trial_status": "diverged", "trial_reason": "loss nan"}, objs)[:2]
            == ("diverged", "loss nan"))


@pytest.mark.parametrize("space,key", [("uvac", "prior_init"), ("cat_uvac", "head_init")])
def test_aligned_starts_are_searched_only_where_every_front_end_is_normalised_per_speaker(space, key):
    """The aligned starts read the speaker ids: offered on a study of speaker-normalised front ends
    only, and then every draw resolves on that front end (its warm-up searched like a fitted start's)."""
    for per_speaker in (["awe_speaker"], ["awe_voice"], ["awe_speaker", "awe_voice"]):
        params, _ = record_space(space, frontends=per_speaker)
        assert "aligned" in next(p for p in params if p["name"] == key)["choices"]
    for frontends in (["awe"], ["awe", "awe_speaker"], ["awe_voice", "awe_raw"]):
        params, _ = record_space(space, frontends=frontends)
        assert "aligned" not in next(p for p in params if p["name"] == key)["choices"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3), directions=["maximize", "maximize"])
    fn = get_space(space, epochs=30, frontends=["awe_speaker"])
    drawn = set()
    for _ in range(30):
        trial = study.ask()
        consts = fn(trial) or {}
        config = {**trial.params, **consts, "recipe": "recommended", "epochs": 30}
        resolved = resolve_config(config, preset=PRESETS["awe_speaker"])
        check_frontend(resolved, PRESETS["awe_speaker"])
        drawn.add(resolved[key])
        if resolved[key] == "aligned":
            assert (("prior_warmup_epochs" if space == "uvac" else "head_warmup_epochs") in trial.params)
        study.tell(trial, [0.0, 0.0])
    assert "aligned" in drawn


def test_a_study_trains_each_trial_once_where_the_recipe_votes():
    """Both recipes on a per-speaker front end vote over 3 restarts; a study's trials train once (a vote
    reports no epoch before its last candidate ends, so no scheduler could judge it) unless --set asks
    for restarts."""
    from study.options import StudyOptions, fixed_config

    voice = PRESETS["awe_voice"]
    for model in ("uvac", "cat_uvac"):
        plain = resolve_config({"model": model, "recipe": "recommended"}, preset=voice)
        assert (plain["restarts"], plain["restart_combine"]) == (3, "vote")
    assert resolve_config({"model": "cat_uvac", "recipe": "recommended"}, preset=PRESETS["awe"])["restarts"] == 1
    for space in ("uvac", "cat_uvac"):
        fixed = fixed_config(StudyOptions(space=space, dataset="fsdd", frontends=["awe_voice"]), 10)
        assert resolve_config({**fixed, "model": space}, preset=voice)["restarts"] == 1
    asked = StudyOptions(space="uvac", dataset="fsdd", frontends=["awe_voice"], overrides={"restarts": 3})
    assert resolve_config({**fixed_config(asked, 10), "model": "uvac"}, preset=voice)["restarts"] == 3
    assert "restarts" not in fixed_config(StudyOptions(space="kmeans", dataset="fsdd"), 10)
