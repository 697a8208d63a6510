"""The training config: one flat dict, the only interface between search and training.

Every value is a ``str``, ``int``, ``float`` or ``bool`` so that Ray Tune, Optuna and MLflow
params take it as is. Each key is defined once, as a :class:`trainables.config_keys.Key` (name,
default, choices or range, help): the training loop's in ``trainables.config_keys``, a model's
own with its class (``ClusteringModel.config_keys`` / ``key_defaults``), the baselines' in
``trainables.baselines``. From them this module derives :data:`DEFAULTS` (every key of every
registered model: the flat dict), :data:`CHOICES`, :func:`resolve_config` (fills in the missing
keys and validates everything, raising :class:`ConfigError`, a ``ValueError`` naming the key) and
the key reference (:func:`key_reference`: docs/CONFIG.md, ``python -m trainables.config`` writes
it); ``trainables.train`` makes every key a flag.

Paper defaults (docs/MODELS.md, "Models"):

* ``uvac``: Adam, lr 5e-4 decaying exponentially to 5e-5 (the categorical paper's III-D for both
  models; the UVAC paper's own 5e-3 -> 5e-4 is recipe ``paper-lr5e-3``), recon and KL weighted
  equally (``lam`` 1.0), 500 epochs, batch 64, d_z 10.
* ``cat_uvac``: lr 5e-4 -> 5e-5, ``lam`` 0.5 for AudioMNIST and 2.0 for UrbanSound8K and
  TAU2019 (Table I, ``CatUVAC.paper_defaults``), tau annealed from 1.0 to 0.5 over the run.
* ``kmeans`` / ``gmm``: scikit-learn baselines on the flattened features; only ``seed``,
  ``n_clusters`` (and ``gmm_covariance``) matter.
"""
from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from trainables.baselines import BASELINE_KEYS, FITTED_BASELINES
from trainables.config_keys import TRAINING_KEYS, ConfigError, Key, reference
from trainables.models import RegistryView, registered_models
from trainables.models.blocks import parse_channels as _parse_channels
from trainables.reconstruction import REAL_VALUED_LIKELIHOODS

__all__ = [
    "DEFAULTS",
    "MODEL_DEFAULTS",
    "RECIPES",
    "REAL_VALUED",
    "SPEAKER_NORMALISED",
    "SPEAKER_DISJOINT",
    "RECIPE_FRONTENDS",
    "recipe_frontend",
    "BENCHMARK_EPOCHS",
    "RECIPE_EPOCHS",
    "recipe_epochs",
    "CHOICES",
    "ConfigError",
    "Key",
    "all_keys",
    "key_owners",
    "key_reference",
    "model_names",
    "structural_keys",
    "resolve_config",
    "parse_channels",
    "load_config_file",
    "check_frontend",
    "check_split",
]

BASELINES = FITTED_BASELINES  # registered in trainables.baselines

# Named recipes: per model, the values a recipe sets on top of DEFAULTS and MODEL_DEFAULTS (a model
# a recipe does not name takes none).
# "paper" keeps the papers' settings (every stabiliser off); "recommended" is the combination
# measured best on real speech by ``python -m benchmarks.quality`` (README, "Quality on real
# speech"); its keys and values are what that benchmark's ablation switches off one by one.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"uvac": {}, "cat_uvac": {}},
    "paper-lr5e-3": {"uvac": {"lr_start": 5e-3, "lr_end": 5e-4}, "cat_uvac": {}},
    "recommended": {
        "uvac": {"likelihood": "bernoulli", "dec_bias_init": "data_mean", "prior_init": "fit",
                 "prior_warmup_epochs": 5, "bn_reestimate": True, "pool": "mean",
                 "lr_start": 2e-3, "lr_end": 2e-4, "batch_size": 16},
        "cat_uvac": {"likelihood": "bernoulli", "dec_bias_init": "data_mean", "marginal_entropy_weight": 5.0,
                     "bn_reestimate": True, "pool": "mean", "lr_start": 1e-3, "lr_end": 1e-4, "batch_size": 8},
    },
}
# What a recipe sets instead on real-valued front ends (normalisation band / speaker / none), where
# the Bernoulli likelihood (defined on [0, 1] targets) does not apply and the style factor does
# (resolve_config(..., preset=...)). "recommended" here is the recipe found on real speech.
REAL_VALUED: dict[str, dict[str, dict[str, Any]]] = {
    # chosen on validation accuracy from the Pareto fronts of the studies fsdd-uvac-r2 (trial 4: its
    # values verbatim) and fsdd-cat-r1 (trial 23, rounded to two significant digits) (README,
    # "Quality on real speech")
    "recommended": {
        "uvac": {"likelihood": "gaussian_learned_freq", "d_z": 4, "lam": 1.276621461207717,
                 "lr_start": 0.0030725839229803027, "lr_end": 1.664250673287914e-05, "dec_bias_init": "zero",
                 "bn_reestimate": True, "pool": "last", "augment": "speed,shift", "consistency": "mi",
                 "consistency_weight": 7.754483613333364, "overcluster": 0, "free_bits": 0.25,
                 "style_clusters": 8, "prior_init": "fit", "prior_warmup_epochs": 4, "prior_styles": 4},
        "cat_uvac": {"likelihood": "gaussian_learned", "d_z": 25, "lam": 0.1, "lr_start": 1.2e-3, "lr_end": 8.7e-5,
                     "dec_bias_init": "zero", "augment": "speed,warp,shift,eq", "aug_warp": 0.083,
                     "consistency": "mi", "consistency_weight": 42.0, "free_bits": 0.25,
                     "marginal_entropy_weight": 17.0, "kl_z_weight": 3.1, "gumbel_hard": True,
                     "tau_kind": "constant", "tau_start": 1.0,
                     # measured after the study (benchmarks.quality --candidate, 3 seeds, 2026-12-06):
                     # the fully connected networks on awe's 13 x 10 input
                     "encoder": "mlp", "mlp_hidden": "512,256"},
    },
}
# What a recipe sets on top of REAL_VALUED on a front end normalised per speaker (normalisation
# "speaker": speaker ids are side information there already): no style factor (per-speaker CMVN has
# removed the offsets it learns) and the clusters kept independent of the speaker
# (trainables.independence). Both models' values: measured with benchmarks.quality (README, "Quality
# on real speech", with per-speaker normalisation; categorical UVAC's 2026-12-06, +10.5 validation
# points over 3 seeds against none, 30 gave +6.3). UVAC's prior started from the per-speaker clusters
# matched across speakers (prior_init aligned) with d_z 10: +9.2 validation points over 3 seeds
# (2026-12-06; d_z 4: +7.2, d_z 16: +2.2, speaker_independence 0 with it: -0.3, 30: +7.3).
# UVAC votes over 3 restarts there (trainables.restarts; 2026-12-07, awe_voice, random split, 6 seeds,
# benchmarks.quality --candidate: validation 84.2 % against 81.3 % for one training, test 85.3 % against
# 82.6 %, the spread over seeds 1.5 points against 3.7; 3 times the training). A vote reports no epoch
# before its last restart ends (no scheduler could judge it), so a study trains each trial once
# (study.options.fixed_config). UVAC self-labels its views (SCAN, self_label 3) since 2026-12-07, thirteenth
# session (benchmarks.quality --candidate "self_label=3", 6 seeds, validation: awe_voice 84.83 % against 84.58,
# awe_speaker 86.50 % against 86.17, never below on a seed; speaker-disjoint split 71.50 % against 69.87; test
# 84.83 / 84.58 / 69.40 % against 84.58 / 84.42 / 70.17; docs/QUALITY.md); categorical UVAC lost 1.3-2.0
# validation points with it (3 and 10, 3 seeds), so it has none.
# Categorical UVAC's values are, since the fifth release of 2026-12-06, study fsdd-cat-voice-r1's
# trial 30 verbatim (awe_voice; benchmarks.quality --candidate over 3 seeds, random split: validation
# 84.7 % against 72.7 % for the values before, style_clusters 0 and speaker_independence 10 alone),
# voting over 3 restarts since 2026-12-07 (--candidate over 6 seeds, random split, validation: awe_speaker
# 82.8 % against 77.8 %, test 81.3 % against 76.1 %, which removes its bad seeds; awe_voice 84.3 % against
# 83.4 %, test 82.4 % against 82.6 %), without the study trial's marginal entropy (11.2) since the same
# day (the ablation over 3 seeds found it did not pay; --candidate "marginal_entropy_weight=0" over 6
# seeds, random split, validation: awe_voice 85.0 % against 84.3 %, up on 5/6 seeds, test 83.1 % against
# 82.4 %; awe_speaker 85.5 % against 82.8 %, test 84.3 % against 81.3 %; docs/QUALITY.md), and with
# twice the trial's speaker independence (60 instead of 30) since the same day (6 seeds, validation:
# awe_voice 85.9 % against 85.0 %, test 82.9 % against 83.1 %; awe_speaker 87.4 % against 85.5 %, test
# 84.3 % both; a consistency weight of 60 lost 1.75 validation points).
SPEAKER_NORMALISED: dict[str, dict[str, dict[str, Any]]] = {
    "recommended": {"uvac": {"style_clusters": 0, "speaker_independence": 10.0, "prior_init": "aligned", "d_z": 10,
                             "restarts": 3, "restart_combine": "vote", "self_label": 3.0},
                    "cat_uvac": {"style_clusters": 0, "speaker_independence": 60.0, "head_init": "aligned",
                                 "head_warmup_epochs": 6, "d_z": 19, "likelihood": "gaussian",
                                 "lam": 5.3385695402843965, "lr_start": 0.0005415801033990845,
                                 "lr_end": 0.00010135726294868051, "dec_bias_init": "zero", "bn_reestimate": True,
                                 "encoder": "mlp", "mlp_hidden": "256,128", "augment": "speed,warp,shift",
                                 "neighbours": 20, "consistency": "mi", "consistency_weight": 29.373835819948244,
                                 "overcluster": 5, "contrastive": 10.0, "contrastive_temperature": 0.5,
                                 "aug_warp": 0.09625572145729176, "free_bits": 0.25,
                                 "marginal_entropy_weight": 0.0, "kl_z_weight": 0.6127161409054094,
                                 "gumbel_hard": False, "tau_kind": "constant", "tau_start": 0.7277278220672223,
                                 "restarts": 3, "restart_combine": "vote"}},
}
# What a recipe sets on top of SPEAKER_NORMALISED on the speaker-disjoint split (config key
# split_scheme "group": the model trains on some speakers and is validated and tested on others), chosen
# on that split's validation. UVAC's values are trial 17 of study fsdd-uvac-group-r1-replicas (2026-12-07;
# its consistency weight and warp rounded as the study printed them): warped views, a heavier
# consistency and a plain mixture prior instead of the factorial one, whose styles start from the
# training speakers (2 on this split, 4 on the random one). benchmarks.quality --candidate, 6 seeds on
# awe_voice: validation 69.9 % against 62.9 % for the per-speaker values alone, test 70.2 % against
# 64.2 % (awe_voice_aligned 68.3 / 67.7 %); on the random split the same values lose 5.7 validation
# points (78.5 % against 84.2 %), so they are not SPEAKER_NORMALISED's (docs/QUALITY.md).
# UVAC keeps the narrower networks that study and benchmark used (channels 8,16,32,64, GRU 64; 2026-12-07,
# twelfth session, 6 seeds: validation 69.9 % against 69.2 % with the model's own widths, test 70.2 % against
# 66.7 %), where on the random split the model's own widths are preferred on validation (awe_voice 84.6 %
# against 84.2 %, awe_speaker 86.2 % against 81.9 %; docs/QUALITY.md).
# Categorical UVAC's per-speaker values hold on this split as they are (71.9 %, +4.2 over 6 seeds).
SPEAKER_DISJOINT: dict[str, dict[str, dict[str, Any]]] = {
    "recommended": {"uvac": {"augment": "speed,warp,shift", "aug_warp": 0.112, "consistency_weight": 29.3,
                             "prior_styles": 0, "channels": "8,16,32,64", "gru_hidden": 64}},
}
# The front end (features preset) each recipe is measured with, per model: "recommended (front end
# included)". features.build, study.launch and the benchmarks take it as their default front end for
# speech; the training config itself works on whatever table it is given (key ``frontend``).
RECIPE_FRONTENDS: dict[str, dict[str, str]] = {
    "paper": {"uvac": "audiomnist", "cat_uvac": "audiomnist"},
    "paper-lr5e-3": {"uvac": "audiomnist", "cat_uvac": "audiomnist"},
    # awe_voice (CMVN per inferred speaker, 4 voices) for both: FSDD, random split, 3 seeds
    # (benchmarks.quality, 2026-12-06), validation: UVAC 81.3 % (awe_raw 62.2 %), categorical UVAC
    # 72.7 % (awe 52.8 %). Its 4 voices are FSDD's 4 speakers: docs/MODELS.md, "Speakers inferred".
    "recommended": {"uvac": "awe_voice", "cat_uvac": "awe_voice"},
}


def recipe_frontend(recipe: str, model: str) -> str | None:
    """The front end ``recipe`` is measured with for ``model`` (None for a baseline)."""
    return RECIPE_FRONTENDS.get(recipe, {}).get(model)


# The training length each recipe is measured with, per model (a recipe or model not named: BENCHMARK_EPOCHS):
# benchmarks.quality's default --epochs, and the key ``epochs`` under that recipe unless given (since
# 2026-12-07, sixteenth session: before, a run of ``recommended`` without --epochs trained the papers' 500;
# a study's length is its own --epochs budget). Categorical UVAC trains 60 epochs since 2026-12-07
# (fifteenth session): chosen on validation rotated over the 9 folds of FSDD's non-test clips
# (benchmarks.quality --rotate-val, seeds 0-8, awe_voice, random split): 84.50 % against 83.17 % at 30
# epochs, higher on 7 of the 9 folds, lower on 1 (test 85.11 % against 83.94 %); on the one stored split
# the two were level over 12 seeds (85.58 / 85.62 %; test 84.46 / 82.67 %). docs/QUALITY.md.
BENCHMARK_EPOCHS = 30
RECIPE_EPOCHS: dict[str, dict[str, int]] = {"recommended": {"uvac": BENCHMARK_EPOCHS, "cat_uvac": 60}}


def recipe_epochs(recipe: str, model: str) -> int:
    """The epochs ``recipe`` is measured with for ``model`` (:data:`RECIPE_EPOCHS`, else
    :data:`BENCHMARK_EPOCHS`)."""
    return int(RECIPE_EPOCHS.get(recipe, {}).get(model, BENCHMARK_EPOCHS))


# Recipes in which a model's per-dataset paper values apply (ClusteringModel.paper_defaults).
PAPER_LAM_RECIPES = ("paper", "paper-lr5e-3")


def model_names() -> tuple[str, ...]:
    """The config's ``model`` choices: the registered networks, then the fitted baselines."""
    return (*registered_models(), *BASELINES)


@functools.lru_cache(maxsize=8)
def _keys_of(models: tuple) -> dict[str, Key]:
    keys: dict[str, Key] = {}
    for key in (*TRAINING_KEYS, *(k for _, cls in models for k in cls.own_keys()), *BASELINE_KEYS):
        keys.setdefault(key.name, key)
    names = (*(name for name, _ in models), *BASELINES)
    keys["model"] = replace(keys["model"], choices=names)
    keys["recipe"] = replace(keys["recipe"], choices=tuple(RECIPES))
    return keys


def all_keys() -> dict[str, Key]:
    """name -> :class:`Key` of every key: the training loop's, each registered model's (in
    registration order, base classes first), the baselines'."""
    return dict(_keys_of(tuple(registered_models().items())))


def key_owners() -> dict[str, str]:
    """name -> who uses the key: ``all`` (the training loop), the models declaring it, ``baselines``."""
    models = registered_models()
    out = {k.name: "all" for k in TRAINING_KEYS}
    for name, cls in models.items():
        for key in cls.own_keys():
            out[key.name] = f"{out[key.name]}, {name}" if key.name in out else name
    out.update({k.name: "baselines" for k in BASELINE_KEYS})
    return out


def structural_keys() -> tuple[str, ...]:
    """The keys that shape the network: a resumed run must agree on them."""
    return tuple(name for name, key in all_keys().items() if key.structural)


def key_reference() -> str:
    """docs/CONFIG.md: the key reference, generated from the key definitions."""
    head = ("# Config keys\n\nGenerated by `python -m trainables.config > docs/CONFIG.md` from the key "
            "definitions (`trainables/config_keys.py`, each model's `config_keys`, `trainables/baselines.py`); "
            "`tests/test_config_keys.py` checks that this file is current. Every key is also a flag of "
            "`python -m trainables.train` (`tau_kind` -> `--tau-kind`) and a `--set KEY=VALUE` of "
            "`python -m study.launch`. The models' own defaults of keys declared elsewhere (`key_defaults`), "
            "over the defaults below:\n\n")
    overrides = [f"- `{name}`: " + ", ".join(f"`{k}` = `{v!r}`" for k, v in d.items()) + "\n"
                 for name, d in MODEL_DEFAULTS.items() if d]
    return head + "".join(overrides) + "\n" + reference(all_keys().values(), key_owners())


def _model_defaults(model: str) -> dict[str, Any]:
    cls = registered_models().get(model)
    return {} if cls is None else cls.shared_key_defaults()


# name -> default of every key (the flat dict); key -> choices; model -> its defaults of shared keys
DEFAULTS: Mapping[str, Any] = RegistryView(lambda: {n: k.default for n, k in all_keys().items()})
CHOICES: Mapping[str, tuple] = RegistryView(lambda: {n: k.choices for n, k in all_keys().items() if k.choices})
MODEL_DEFAULTS: Mapping[str, dict] = RegistryView(lambda: {m: _model_defaults(m) for m in model_names()})


def parse_channels(spec: str | list | tuple) -> tuple[int, ...]:
    """``"16,32,64,128"`` -> ``(16, 32, 64, 128)`` (trainables.models.blocks.parse_channels); raises
    ConfigError on anything else."""
    try:
        return _parse_channels(spec)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def resolve_config(partial: Mapping[str, Any] | None = None, *, dataset: str | None = None,
                   preset: Any = None) -> dict[str, Any]:
    """A complete, validated config from ``partial`` (missing keys take the defaults).

    Defaults are taken in this order: :data:`DEFAULTS`, then the chosen model's ``key_defaults``
    (:data:`MODEL_DEFAULTS`), then the chosen ``recipe``'s values for that model (:data:`RECIPES`, and
    the epochs it is measured with: :data:`RECIPE_EPOCHS`),
    for a real-valued front end (``preset.bounded`` False) the recipe's :data:`REAL_VALUED` values, for
    a front end normalised per speaker (given or inferred: ``preset.per_speaker``) also its
    :data:`SPEAKER_NORMALISED` values, and there on the speaker-disjoint split (``split_scheme``
    "group" in ``partial``) its :data:`SPEAKER_DISJOINT` values,
    then under a paper recipe the model's per-dataset paper values for the keys not given
    (``paper_defaults(dataset)``, ``dataset`` an adapter name: categorical UVAC's lambda). Values
    given in ``partial`` always win. A recipe's ``likelihood`` other than ``gaussian`` needs
    ``divergence="euc"``: when the caller picks ``is`` or ``kl`` without naming a likelihood, it is
    ``gaussian``. Resolving a resolved config returns it unchanged.

    Raises :class:`ConfigError` for an unknown key, a value of the wrong type, a value
    outside its choices or range, or inconsistent values (``lr_end > lr_start``, ...).
    """
    keys = all_keys()
    partial = dict(partial or {})
    unknown = sorted(k for k in partial if k not in keys)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(keys))}")
    model = partial.get("model", keys["model"].default)
    recipe = partial.get("recipe", keys["recipe"].default)
    for key, value in (("model", model), ("recipe", recipe)):
        if value not in keys[key].choices:
            raise ConfigError(f"{key}: expected one of {', '.join(keys[key].choices)}, got {value!r}")
    cfg = {name: key.default for name, key in keys.items()}
    cfg.update(_model_defaults(model))
    cfg.update(RECIPES[recipe].get(model, {}))
    if model in RECIPE_EPOCHS.get(recipe, {}):  # the length the recipe was measured with
        cfg["epochs"] = RECIPE_EPOCHS[recipe][model]
    if preset is not None and not getattr(preset, "bounded", True):
        cfg.update(REAL_VALUED.get(recipe, {}).get(model, {}))
    if preset is not None and getattr(preset, "per_speaker", False):
        cfg.update(SPEAKER_NORMALISED.get(recipe, {}).get(model, {}))
        if partial.get("split_scheme") == "group":
            cfg.update(SPEAKER_DISJOINT.get(recipe, {}).get(model, {}))
    cls = registered_models().get(model)
    if cls is not None and recipe in PAPER_LAM_RECIPES:
        cfg.update({k: v for k, v in cls.paper_defaults(dataset).items() if k not in partial})
    for k, v in partial.items():
        cfg[k] = keys[k].coerce(v)
    if "likelihood" not in partial and cfg["divergence"] != "euc":
        # a recipe's likelihood is defined on normalised targets; an explicit IS / KL divergence
        # takes the papers' likelihood for that divergence instead of failing validation
        cfg["likelihood"] = "gaussian"
    _validate(cfg, keys)
    return cfg


def _validate(cfg: dict[str, Any], keys: Mapping[str, Key]) -> None:
    """Every key's own check (choices, range: :meth:`Key.check`), then the rules between keys: the
    training loop's and every registered model class's ``check_config`` (every config holds their keys)."""
    for name, key in keys.items():
        cfg[name] = key.check(cfg[name])
    if cfg["lr_end"] > cfg["lr_start"]:
        raise ConfigError(
            f"lr_end ({cfg['lr_end']:g}) > lr_start ({cfg['lr_start']:g}): "
            "the learning rate decays from lr_start to lr_end"
        )
    _check_restarts(cfg)
    if int(cfg["tta_views"]) > 0 and cfg["augment"] == "none":
        raise ConfigError(f"tta_views ({cfg['tta_views']}) averages a clip's cluster probabilities over augmented "
                          f"views, but augment is none: name the views (e.g. augment speed,warp,shift) or set "
                          f"tta_views 0")
    seen = set()
    for cls in registered_models().values():
        for klass in reversed(cls.__mro__):
            check = vars(klass).get("check_config")
            if check is not None and check not in seen:
                seen.add(check)
                check.__get__(None, cls)(cfg)


def _check_restarts(cfg: Mapping[str, Any]) -> None:
    """Restarts chosen before the model's warm-up is over would be chosen before its clusters exist
    (UVAC's prior fit, categorical UVAC's head fit)."""
    from trainables.models import warmup_epochs

    if int(cfg["restarts"]) > 1 and int(cfg["replicas"]) > 1:
        raise ConfigError(f"restarts ({cfg['restarts']}) and replicas ({cfg['replicas']}): choose one (replicas judge "
                          f"a config by several seeds, restarts keep the best of several)")
    e, epochs = int(cfg["restart_epochs"]), int(cfg["epochs"])
    if int(cfg["restarts"]) <= 1 or not 0 < e < epochs:
        return
    if cfg["restart_combine"] == "vote":
        raise ConfigError(f"restart_epochs ({e}) < epochs ({epochs}): voting restarts are trained for the "
                          f"whole run (restart_epochs 0)")
    warmup = warmup_epochs(cfg)
    if e < warmup:
        raise ConfigError(f"restart_epochs ({e}) ends inside the model's warm-up ({warmup} epochs): the restarts "
                          f"would be chosen before their clusters are formed; use at least {warmup}, or 0 for "
                          f"the whole run")


def check_split(cfg: Mapping[str, Any], table: Any) -> None:
    """ConfigError when ``table`` was loaded with another validation fold than the config names
    (``val_fold``: ``load_table(..., val_fold=cfg['val_fold'])``): its metrics would be labelled with the
    wrong split."""
    fold, loaded = int(cfg.get("val_fold", 0)), int(getattr(table, "val_fold", 0))
    if fold != loaded:
        raise ConfigError(f"val_fold={fold}: the table was loaded with validation fold {loaded} "
                          f"(load_table(..., val_fold=cfg['val_fold']))")


def check_frontend(cfg: Mapping[str, Any], preset: Any) -> None:
    """ConfigError (one line) when a resolved config cannot train on features of ``preset``: another
    front end than the config names, IS / KL on features that do not de-normalise, the Bernoulli
    likelihood on real-valued features, a style factor on [0, 1] features, speaker ids in training
    (``ClusteringModel.speaker_id_settings``: ``speaker_independence``, the aligned starts) on a
    front end that does not normalise per speaker (``speaker``, or ``voice``: the inferred speakers),
    ``voices`` on a front end that infers no voices or on a table loaded with another count."""
    if preset is None:
        return
    name = getattr(preset, "name", "")
    voices = int(cfg.get("voices", 0))
    if voices:
        from features.loader import with_voices

        try:  # a front end that infers no voices: load_table's own refusal
            with_voices(preset, voices)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if voices and preset.voices != voices:
        raise ConfigError(f"voices={voices}: the table of front end {name!r} was loaded with {preset.voices} voices "
                          f"(load_table(..., voices=cfg['voices']))")
    if cfg["model"] in BASELINES:
        return
    if cfg.get("frontend") and cfg["frontend"] != name:
        raise ConfigError(f"frontend: the config trains on front end {cfg['frontend']!r}, the features given are "
                          f"{name!r}")
    if cfg["divergence"] != "euc" and not preset.invertible:
        raise ConfigError(f"divergence {cfg['divergence']!r} needs linear magnitudes: front end {name!r} "
                          f"({preset.scale}, {preset.normalisation} normalisation) does not de-normalise to them; "
                          f"use divergence 'euc'")
    if not preset.bounded and cfg["likelihood"] not in REAL_VALUED_LIKELIHOODS:
        raise ConfigError(f"likelihood 'bernoulli' needs features in [0, 1]; front end {name!r} is real-valued "
                          f"({preset.normalisation} normalisation): use gaussian, gaussian_learned or "
                          f"gaussian_learned_freq")
    if preset.bounded and int(cfg["style_clusters"]) > 0:
        raise ConfigError(f"style_clusters needs real-valued features; front end {name!r} is in [0, 1] "
                          f"(clip normalisation)")
    cls = registered_models().get(cfg["model"])
    settings = cls.speaker_id_settings(cfg) if cls is not None else ()
    if settings and not preset.per_speaker:
        raise ConfigError(f"{' and '.join(settings)} uses speaker ids in training: it needs a front end normalised per "
                          f"speaker, given (e.g. awe_speaker) or inferred (e.g. awe_voice); front end {name!r} "
                          f"has {preset.normalisation} normalisation")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A partial config from a JSON file (an object of config keys); clear errors on bad files."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {p} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a JSON object of config keys, got {type(data).__name__}")
    return data


if __name__ == "__main__":
    print(key_reference(), end="")
