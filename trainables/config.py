"""The training config: one flat dict, the only interface between search and training.

Every value is a ``str``, ``int``, ``float`` or ``bool`` so that Ray Tune, Optuna and MLflow
params take it as is. :data:`DEFAULTS` lists every key; :func:`resolve_config` fills in the
missing ones (with the paper defaults of the chosen model and, for categorical UVAC's
``lam``, of the dataset) and validates everything, raising :class:`ConfigError` (a
``ValueError``) with a message that names the key.

Paper defaults (docs/MODELS.md, "Models"):

* ``uvac``: Adam, lr 5e-4 decaying exponentially to 5e-5 (the categorical paper's III-D for both
  models; the UVAC paper's own 5e-3 -> 5e-4 is recipe ``paper-lr5e-3``), recon and KL weighted
  equally (``lam`` 1.0), 500 epochs, batch 64, d_z 10.
* ``cat_uvac``: lr 5e-4 -> 5e-5, ``lam`` 0.5 for AudioMNIST and 2.0 for UrbanSound8K and
  TAU2019 (Table I), tau annealed from 1.0 to 0.5 over the run.
* ``kmeans`` / ``gmm``: scikit-learn baselines on the flattened features; only ``seed``,
  ``n_clusters`` (and ``gmm_covariance``) matter.

Key reference (``0`` means "automatic" where said):

=====================  ==========================================================================
model                  cat_uvac | uvac | kmeans | gmm | kmeans_std | gmm_std (trainables.baselines.BASELINES)
n_clusters             clusters C / categories K; 0 = the number of classes in the data
d_z                    latent size
divergence             reconstruction divergence: euc | is | kl (IS/KL on de-normalised values)
lam                    weight of the KL terms (categorical paper's lambda; UVAC paper: 1)
lr_start, lr_end       Adam learning rate, exponential decay from lr_start to lr_end over the run
epochs                 training epochs
batch_size             mini-batch size
tau_kind               Gumbel-Softmax temperature schedule: constant | linear | exponential | cosine
tau_start, tau_end     temperature at the first epoch / at the end of the anneal
tau_anneal_epochs      length of the anneal in epochs; 0 = the whole run
tau_floor              the temperature never goes below this (numerical safety)
kl_warmup_epochs       linear warm-up of the KL weight from 0 to lam; 0 = off
grad_clip              clip the gradient norm to this value; 0 = off
seed                   seeds torch, numpy and the shuffling generator
channels               encoder channels, comma separated (decoder mirrors them)
gru_hidden             units of the two GRU layers
device                 auto | cpu | cuda | cuda:N
precision              fp32 | bf16 (bf16 autocast only honoured on CUDA)
split_scheme           random | group (which split of the feature cache to use)
checkpoint_every       write a checkpoint every N epochs (and at the end); 0 = only at the end
silhouette_sample      silhouette on at most this many clips (fixed seed); 0 = all
recipe                 paper | paper-lr5e-3 | recommended: the base the other keys start from
                       (see RECIPES; values given explicitly always win)
likelihood             reconstruction likelihood: gaussian (papers) | bernoulli |
                       gaussian_learned | gaussian_learned_freq (the last three need euc)
dec_bias_init          decoder output bias: zero (papers) | data_mean (output = mean input at init)
prior_init             UVAC's GMM prior: paper (random, IV-B) | fit (N(0, I) prior for
                       prior_warmup_epochs, then a GaussianMixture fitted on the latent means)
prior_warmup_epochs    epochs before the prior is fitted (prior_init=fit)
marginal_entropy_weight  categorical UVAC: weight of KL(batch-mean q(y) || uniform); 0 = off
kl_z_weight            categorical UVAC: scale of KL_z inside the lambda bracket (1 = eq. 7)
gumbel_hard            categorical UVAC: straight-through (one-hot forward) Gumbel-Softmax
bn_reestimate          recompute BatchNorm running statistics on the train split before
                       every evaluation
pool                   GRU summary of a clip: last (last step) | mean (over real frames)
gmm_covariance         covariance type of the GMM-EM baseline: diag | spherical | full | tied
augment                augmented views made on the fly (trainables.augment): none, or a comma
                       separated subset of speed, warp, shift, eq
aug_speed              tempo perturbation: rate in 1 +- aug_speed (stretched clips: a time warp)
aug_warp               vocal-tract-length warping: frequency factor in 1 +- aug_warp
aug_shift              time shift of up to aug_shift x the clip's frames
aug_eq                 random EQ: amplitude of the smooth random spectral curve
consistency            between the cluster posteriors of a batch and its augmented view:
                       none | mi (IIC: log K - mutual information) | skl (symmetric KL);
                       categorical UVAC: q(y|x); UVAC: the GMM responsibilities (once fitted)
consistency_weight     weight of the consistency terms
overcluster            > 0: an auxiliary head of overcluster x n_clusters clusters trained by the
                       consistency term alone (IIC's overclustering); 0 = off
free_bits              KL_z counts at least this many nats per latent dimension (Kingma et al.
                       2016); 0 = off
style_clusters         > 0: a style factor (trainables.models.style): that many style classes
                       q(s|x) from the clip's per-row statistics, each an additive offset of the
                       decoder output (speaker / channel), so the clusters need not encode it;
                       real-valued front ends only; 0 = off
style_balance          weight of KL(batch-mean q(s) || uniform), the style factor's balance term
prior_styles           UVAC: > 0 makes the GMM prior factorial (trainables.models.factorial):
                       n_clusters content x prior_styles style components, means content + style,
                       fitted after the warm-up (prior_init fit); clusters sum over the styles
frontend               the front end (features preset) the config trains on: a study searching
                       front ends picks the feature cache by it; "" = the table given
=====================  ==========================================================================
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from trainables.augment import parse_augment
from trainables.baselines import COVARIANCE_TYPES, FITTED_BASELINES
from trainables.consistency import CONSISTENCIES
from trainables.models import MODELS as NETWORKS  # the model registry
from trainables.losses import DIVERGENCES
from trainables.models.base import DEC_BIAS_INITS
from trainables.models.blocks import POOLS
from trainables.models.blocks import parse_channels as _parse_channels
from trainables.models.uvac import PRIOR_INITS
from trainables.reconstruction import LIKELIHOODS, REAL_VALUED_LIKELIHOODS
from trainables.schedules import TAU_KINDS

__all__ = [
    "DEFAULTS",
    "MODEL_DEFAULTS",
    "RECIPES",
    "REAL_VALUED",
    "RECIPE_FRONTENDS",
    "recipe_frontend",
    "CHOICES",
    "ConfigError",
    "resolve_config",
    "paper_lam",
    "parse_channels",
    "load_config_file",
    "check_frontend",
]

BASELINES = FITTED_BASELINES  # registered in trainables.baselines
NEURAL_MODELS = tuple(NETWORKS)
MODELS = (*NEURAL_MODELS, *BASELINES)

DEFAULTS: dict[str, Any] = {
    "model": "cat_uvac",
    "n_clusters": 0,
    "d_z": 10,
    "divergence": "euc",
    "lam": 0.5,
    "lr_start": 5e-4,
    "lr_end": 5e-5,
    "epochs": 500,
    "batch_size": 64,
    "tau_kind": "linear",
    "tau_start": 1.0,
    "tau_end": 0.5,
    "tau_anneal_epochs": 0,
    "tau_floor": 0.05,
    "kl_warmup_epochs": 0,
    "grad_clip": 0.0,
    "seed": 0,
    "channels": "16,32,64,128",
    "gru_hidden": 128,
    "device": "auto",
    "precision": "fp32",
    "split_scheme": "random",
    "checkpoint_every": 1,
    "silhouette_sample": 2000,
    "gmm_covariance": "diag",
    "recipe": "recommended",
    "likelihood": "gaussian",
    "dec_bias_init": "zero",
    "prior_init": "paper",
    "prior_warmup_epochs": 5,
    "marginal_entropy_weight": 0.0,
    "kl_z_weight": 1.0,
    "gumbel_hard": False,
    "bn_reestimate": False,
    "pool": "last",
    "augment": "none",
    "aug_speed": 0.1,
    "aug_warp": 0.1,
    "aug_shift": 0.1,
    "aug_eq": 0.2,
    "consistency": "none",
    "consistency_weight": 1.0,
    "overcluster": 0,
    "free_bits": 0.0,
    "style_clusters": 0,
    "style_balance": 1.0,
    "frontend": "",
    "prior_styles": 0,
}

# Paper defaults that depend on the model; applied for keys the caller did not give.
# UVAC trains at the categorical paper's 5e-4 -> 5e-5 (section III-D): at the UVAC paper's
# 5e-3 its decoder saturates and the run collapses to one cluster (recipe "paper-lr5e-3").
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "uvac": {"lr_start": 5e-4, "lr_end": 5e-5, "lam": 1.0},
    "cat_uvac": {"lr_start": 5e-4, "lr_end": 5e-5, "lam": 0.5},
    **{name: {} for name in BASELINES},
}

# Named recipes: per model, the values a recipe sets on top of DEFAULTS and MODEL_DEFAULTS.
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
    # chosen from the Pareto fronts of the studies fsdd-uvac-r1 (trial 30) and fsdd-cat-r1 (trial 23)
    # on validation accuracy (README, "Quality on real speech"), rounded to two significant digits
    "recommended": {
        "uvac": {"likelihood": "gaussian", "d_z": 26, "lam": 6.6, "lr_start": 1.8e-3, "lr_end": 2.3e-5,
                 "dec_bias_init": "zero", "prior_warmup_epochs": 9, "style_clusters": 8, "augment": "speed,shift",
                 "consistency": "mi", "consistency_weight": 17.0, "overcluster": 5, "free_bits": 1.0},
        "cat_uvac": {"likelihood": "gaussian_learned", "d_z": 25, "lam": 0.1, "lr_start": 1.2e-3, "lr_end": 8.7e-5,
                     "dec_bias_init": "zero", "augment": "speed,warp,shift,eq", "aug_warp": 0.083,
                     "consistency": "mi", "consistency_weight": 42.0, "free_bits": 0.25,
                     "marginal_entropy_weight": 17.0, "kl_z_weight": 3.1, "gumbel_hard": True,
                     "tau_kind": "constant", "tau_start": 1.0},
    },
}
# The front end (features preset) each recipe is measured with, per model: "recommended (front end
# included)". features.build, study.launch and the benchmarks take it as their default front end for
# speech; the training config itself works on whatever table it is given (key ``frontend``).
RECIPE_FRONTENDS: dict[str, dict[str, str]] = {
    "paper": {"uvac": "audiomnist", "cat_uvac": "audiomnist"},
    "paper-lr5e-3": {"uvac": "audiomnist", "cat_uvac": "audiomnist"},
    "recommended": {"uvac": "awe_raw", "cat_uvac": "awe"},
}


def recipe_frontend(recipe: str, model: str) -> str | None:
    """The front end ``recipe`` is measured with for ``model`` (None for a baseline)."""
    return RECIPE_FRONTENDS.get(recipe, {}).get(model)


# Recipes in which categorical UVAC's lambda follows the paper's per-dataset value (Table I).
PAPER_LAM_RECIPES = ("paper", "paper-lr5e-3")

# Categorical UVAC's lambda per dataset (Table I). Keys are dataset adapter names
# (features.datasets.DATASETS), as recorded in the cache manifest and on FeatureTable.dataset.
PAPER_LAM: dict[str, float] = {
    "audiomnist": 0.5,
    "fsdd": 0.5,
    "synthetic": 0.5,
    "urbansound8k": 2.0,
    "tau2019": 2.0,
}

CHOICES: dict[str, tuple[str, ...]] = {
    "model": MODELS,
    "divergence": DIVERGENCES,
    "tau_kind": TAU_KINDS,
    "precision": ("fp32", "bf16"),
    "split_scheme": ("random", "group"),
    "gmm_covariance": COVARIANCE_TYPES,
    "recipe": tuple(RECIPES),
    "likelihood": LIKELIHOODS,
    "dec_bias_init": DEC_BIAS_INITS,
    "prior_init": PRIOR_INITS,
    "pool": POOLS,
    "consistency": CONSISTENCIES,
}


class ConfigError(ValueError):
    """A config key or value is not acceptable; the message names the key."""


def paper_lam(dataset: str | None) -> float | None:
    """Categorical UVAC's paper lambda for a dataset name (None when unknown)."""
    if not dataset:
        return None
    return PAPER_LAM.get(str(dataset).lower())


def parse_channels(spec: str | list | tuple) -> tuple[int, ...]:
    """``"16,32,64,128"`` -> ``(16, 32, 64, 128)`` (trainables.models.blocks.parse_channels); raises
    ConfigError on anything else."""
    try:
        return _parse_channels(spec)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _coerce(key: str, value: Any) -> Any:
    """Coerce ``value`` to the type of ``DEFAULTS[key]`` (strings from a CLI or JSON are fine)."""
    default = DEFAULTS[key]
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.strip().lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{key}: expected a boolean, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
            if f.is_integer():
                return int(f)
        if hasattr(value, "item"):  # numpy scalars
            return _coerce(key, value.item())
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if hasattr(value, "item") and not isinstance(value, (int, float)):
            value = value.item()
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return f
    if isinstance(value, (list, tuple)) and key == "channels":
        return ",".join(str(int(v)) for v in value)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value.strip()


def resolve_config(partial: Mapping[str, Any] | None = None, *, dataset: str | None = None,
                   preset: Any = None) -> dict[str, Any]:
    """A complete, validated config from ``partial`` (missing keys take the defaults).

    Defaults are taken in this order: :data:`DEFAULTS`, then :data:`MODEL_DEFAULTS` of the
    chosen model, then the chosen ``recipe``'s values for that model (:data:`RECIPES`), then
    (categorical UVAC under a paper recipe, when ``lam`` is not given) the paper's lambda of
    ``dataset`` (a dataset adapter name, see :data:`PAPER_LAM`), and for a real-valued front end
    (``preset.bounded`` False) the recipe's :data:`REAL_VALUED` values. Values given in ``partial``
    always win. A recipe's ``likelihood`` other than ``gaussian`` needs ``divergence="euc"``:
    when the caller picks ``is`` or ``kl`` without naming a likelihood, it is ``gaussian``.
    Resolving a resolved config returns it unchanged.

    Raises :class:`ConfigError` for an unknown key, a value of the wrong type, a value
    outside its choices or range, or inconsistent values (``lr_end > lr_start``, ...).
    """
    partial = dict(partial or {})
    unknown = sorted(k for k in partial if k not in DEFAULTS)
    if unknown:
        raise ConfigError(
            f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(DEFAULTS))}"
        )
    model = partial.get("model", DEFAULTS["model"])
    if model not in MODELS:
        raise ConfigError(f"model: expected one of {', '.join(MODELS)}, got {model!r}")
    recipe = partial.get("recipe", DEFAULTS["recipe"])
    if recipe not in RECIPES:
        raise ConfigError(f"recipe: expected one of {', '.join(RECIPES)}, got {recipe!r}")
    cfg = dict(DEFAULTS)
    cfg.update(MODEL_DEFAULTS[model])
    cfg.update(RECIPES[recipe].get(model, {}))
    if preset is not None and not getattr(preset, "bounded", True):
        cfg.update(REAL_VALUED.get(recipe, {}).get(model, {}))
    if model == "cat_uvac" and "lam" not in partial and recipe in PAPER_LAM_RECIPES:
        lam = paper_lam(dataset)
        if lam is not None:
            cfg["lam"] = lam
    for k, v in partial.items():
        cfg[k] = _coerce(k, v)
    if "likelihood" not in partial and cfg["divergence"] != "euc":
        # a recipe's likelihood is defined on normalised targets; an explicit IS / KL divergence
        # takes the papers' likelihood for that divergence instead of failing validation
        cfg["likelihood"] = "gaussian"
    _validate(cfg)
    return cfg


def _validate(cfg: dict[str, Any]) -> None:
    for key, choices in CHOICES.items():
        if cfg[key] not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {cfg[key]!r}")

    def positive(key: str) -> None:
        if not cfg[key] > 0:
            raise ConfigError(f"{key}: must be > 0, got {cfg[key]!r}")

    def non_negative(key: str) -> None:
        if not cfg[key] >= 0:
            raise ConfigError(f"{key}: must be >= 0, got {cfg[key]!r}")

    for key in ("d_z", "epochs", "batch_size", "gru_hidden", "lr_start", "lr_end", "tau_start", "tau_end", "tau_floor"):
        positive(key)
    for key in ("n_clusters", "lam", "tau_anneal_epochs", "kl_warmup_epochs", "grad_clip", "seed",
                "checkpoint_every", "silhouette_sample", "prior_warmup_epochs", "marginal_entropy_weight",
                "kl_z_weight", "aug_eq", "consistency_weight", "overcluster", "free_bits", "style_clusters",
                "style_balance", "prior_styles"):
        non_negative(key)
    for key in ("aug_speed", "aug_warp", "aug_shift"):
        if not 0 <= cfg[key] <= 0.5:
            raise ConfigError(f"{key}: must be in [0, 0.5], got {cfg[key]!r}")
    try:
        ops = parse_augment(cfg["augment"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    cfg["augment"] = ",".join(ops) or "none"
    if cfg["consistency"] != "none" and not ops:
        raise ConfigError(f"consistency {cfg['consistency']!r} compares a batch with its augmented view: "
                          f"set augment (e.g. augment=speed,warp)")
    if cfg["overcluster"] > 0 and cfg["consistency"] == "none":
        raise ConfigError("overcluster: the overclustering head is trained by the consistency term alone: "
                          "set consistency to mi or skl")
    if cfg["likelihood"] != "gaussian" and cfg["divergence"] != "euc":
        raise ConfigError(
            f"likelihood {cfg['likelihood']!r} is defined on the normalised [0, 1] spectrogram: it needs "
            f"divergence 'euc', got {cfg['divergence']!r} (use likelihood 'gaussian' with 'is' / 'kl')"
        )
    if cfg["prior_styles"] == 1:
        raise ConfigError("prior_styles: must be 0 (a plain mixture) or >= 2, got 1")
    if cfg["style_clusters"] == 1:
        raise ConfigError("style_clusters: must be 0 (off) or >= 2, got 1")
    if cfg["n_clusters"] == 1:
        raise ConfigError("n_clusters: must be 0 (= number of classes) or >= 2, got 1")
    if cfg["lr_end"] > cfg["lr_start"]:
        raise ConfigError(
            f"lr_end ({cfg['lr_end']:g}) > lr_start ({cfg['lr_start']:g}): the learning rate decays from lr_start to lr_end"
        )
    if cfg["tau_kind"] != "constant" and cfg["tau_end"] > cfg["tau_start"]:
        raise ConfigError(
            f"tau_end ({cfg['tau_end']:g}) > tau_start ({cfg['tau_start']:g}): the temperature is annealed downwards"
        )
    if cfg["tau_floor"] > cfg["tau_start"]:
        raise ConfigError(f"tau_floor ({cfg['tau_floor']:g}) > tau_start ({cfg['tau_start']:g})")
    parse_channels(cfg["channels"])
    dev = cfg["device"]
    if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {dev!r}")


def check_frontend(cfg: Mapping[str, Any], preset: Any) -> None:
    """ConfigError (one line) when a resolved config cannot train on features of ``preset``: another
    front end than the config names, IS / KL on features that do not de-normalise, the Bernoulli
    likelihood on real-valued features, a style factor on [0, 1] features."""
    if preset is None or cfg["model"] not in NEURAL_MODELS:
        return
    name = getattr(preset, "name", "")
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
