"""One table of key definitions: the flat config (DEFAULTS, CHOICES), its validation, the CLI flags,
the key reference in docs/CONFIG.md and the models' own defaults all come from the Keys."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from trainables.config import (CHOICES, DEFAULTS, MODEL_DEFAULTS, ConfigError, all_keys, key_reference,
                               resolve_config, structural_keys)
from trainables.config_keys import TRAINING_KEYS, Key
from trainables.models import MODELS
from trainables.models.latent import Blocks, LatentClusteringModel

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_key_reference_is_the_generated_one():
    doc = (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    assert doc == key_reference(), "docs/CONFIG.md is stale: python -m trainables.config > docs/CONFIG.md"


def test_the_flat_dict_is_generated_from_the_keys():
    keys = all_keys()
    assert list(DEFAULTS) == list(keys) and all(DEFAULTS[n] == k.default for n, k in keys.items())
    assert {n for n, k in keys.items() if k.choices} == set(CHOICES)
    assert all(isinstance(v, (str, int, float, bool)) for v in DEFAULTS.values())  # Tune / Optuna / MLflow
    assert CHOICES["model"][: len(MODELS)] == tuple(MODELS)
    # each key is defined once: by the training loop, one model class (and its subclasses), or the baselines
    owners = [k.name for k in TRAINING_KEYS]
    owners += [k.name for cls in MODELS.values() for k in vars(cls).get("config_keys", ())]
    owners += [k.name for k in vars(LatentClusteringModel)["config_keys"]]
    assert len(owners) == len(set(owners))
    assert set(structural_keys()) >= {"model", "n_clusters", "d_z", "channels"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_declares_the_defaults_it_resolves_to(name):
    """The class's defaults (training keys, its own keys, its key_defaults) are the resolved config's
    without a recipe (one source), and the model's own defaults of shared keys are MODEL_DEFAULTS."""
    cls = MODELS[name]
    resolved = resolve_config({"model": name, "recipe": "paper"})
    assert {k: resolved[k] for k in cls.defaults() if k != "recipe"} == {
        k: v for k, v in cls.defaults().items() if k != "recipe"}
    assert MODEL_DEFAULTS[name] == cls.shared_key_defaults()


@pytest.mark.parametrize("name", sorted(n for n, c in MODELS.items() if issubclass(c, LatentClusteringModel)))
def test_constructor_defaults_are_the_configs(name):
    """No model carries a default of its own: its constructor's keyword defaults, its Blocks options and the
    schedule values it holds without ``hparams`` are the resolved config's (``n_clusters`` aside: 0 there means
    'the number of classes', which only the data tell)."""
    cls = MODELS[name]
    resolved = resolve_config({"model": name, "recipe": "paper"})
    sig = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
           if p.default is not inspect.Parameter.empty and p.name in resolved and p.name != "n_clusters"}
    assert sig and sig == {k: resolved[k] for k in sig}
    blocks = {f.name: f.default for f in dataclasses.fields(Blocks) if f.name in resolved}
    assert blocks.pop("channels") == tuple(int(c) for c in resolved["channels"].split(","))
    assert blocks.pop("mlp_hidden") == tuple(int(c) for c in resolved["mlp_hidden"].split(","))
    assert blocks == {k: resolved[k] for k in blocks}
    model = cls(16, 16, channels=(2, 3, 4, 4), gru_hidden=6)
    assert model.hparams == {k: resolved[k] for k in model.hparams}


def test_key_checks_name_the_key():
    n = Key("n", 0, "a count", low=0, zero_means="off")
    assert n.check(n.coerce("2")) == 2 and n.coerce(3.0) == 3
    with pytest.raises(ConfigError, match=r"n: must be 0 \(off\) or >= 2, got 1"):
        n.check(1)
    with pytest.raises(ConfigError, match="n: must be >= 0"):
        n.check(-1)
    with pytest.raises(ConfigError, match="n: expected an integer"):
        n.coerce("1.5")
    share = Key("share", 0.1, "a share", low=0, high=0.5)
    with pytest.raises(ConfigError, match=r"share: must be in \[0, 0.5\], got 0.6"):
        share.check(0.6)
    kind = Key("kind", "a", "a kind", choices=("a", "b"))
    with pytest.raises(ConfigError, match="kind: expected one of a, b, got 'c'"):
        kind.check("c")
    assert Key("flag", False, "").coerce("on") is True


def test_validation_comes_from_the_keys_and_the_model_rules():
    with pytest.raises(ConfigError, match="d_z: must be > 0"):
        resolve_config({"d_z": 0})
    with pytest.raises(ConfigError, match="tau_end .* > tau_start"):  # categorical UVAC's rule, on every config
        resolve_config({"model": "uvac", "tau_end": 2.0})
    assert resolve_config({"augment": "speed, eq"})["augment"] == "speed,eq"  # the augment key's canonical form
    assert resolve_config({"channels": [4, 8]})["channels"] == "4,8"


def test_every_searched_parameter_is_a_key_and_searched_within_its_range():
    """The spaces name keys and search ranges; what a key accepts is said once, by its Key: every
    parameter a space may suggest is a config key, and its choices and bounds pass the key's check."""
    from features.presets import PRESETS
    from study.spaces import SPACES, record_space

    keys = all_keys()
    for space in SPACES:
        for frontends in ([], ["compact"], ["mfcc"], sorted(PRESETS)[:2]):
            params, consts = record_space(space, epochs=10, frontends=frontends)
            assert set(consts) <= set(keys), space
            for p in params:
                key = keys[p["name"]]
                values = p["choices"] if p["kind"] == "categorical" else [p["low"], p["high"]]
                for v in values:
                    key.check(key.coerce(v))
