"""Search spaces: define-by-run functions over an ``optuna.Trial`` that compute nothing.

Each space is ``fn(trial, *, epochs, frontends) -> dict of constants``; ``OptunaSearch`` receives
``functools.partial(fn, epochs=..., frontends=...)``. ``frontends`` are the study's front ends
(preset names whose caches the study built): searched as ``frontend`` when there are several; the
front end also decides which likelihoods and stabilisers apply (a lookup, nothing computed). The
suggested values plus the returned constants become the trial's config (the only interface between
search and training).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence

from features.presets import PRESETS
from trainables.baselines import COVARIANCE_TYPES
from trainables.losses import DIVERGENCES as _DIVERGENCES
from trainables.models.blocks import ENCODERS as _ENCODERS
from trainables.reconstruction import LIKELIHOODS as _LIKELIHOODS
from trainables.reconstruction import REAL_VALUED_LIKELIHOODS
from trainables.schedules import TAU_KINDS as _TAU_KINDS

# the choice lists are owned by the modules that implement them; a space searches them in their order
DIVERGENCES = list(_DIVERGENCES)
LIKELIHOODS = list(_LIKELIHOODS)
REAL_LIKELIHOODS = list(REAL_VALUED_LIKELIHOODS)  # real-valued front ends
TAU_KINDS = list(_TAU_KINDS)
ENCODERS = list(_ENCODERS)
AUGMENT_CHOICES = ["none", "speed,shift", "speed,warp,shift", "speed,warp,shift,eq"]
NEIGHBOUR_CHOICES = [0, 5, 10, 20]  # neighbour views (trainables.neighbours): k nearest training clips; 0 = off
CONTRASTIVE_CHOICES = [0.0, 3.0, 10.0, 30.0]  # weight of the instance contrast (trainables.contrastive); 0 = off
SELF_LABEL_CHOICES = [0.0, 3.0, 10.0]  # weight of self-labelling (SCAN, trainables.consistency); 0 = off
TTA_CHOICES = [0, 8]  # test-time views (trainables.evaluation): a clip's probabilities averaged over N views; 0 = off
MLP_HIDDEN_CHOICES = ["256,128", "512,256", "1024,512"]  # widths of the fully connected networks


def _frontend(trial, frontends: Sequence[str]) -> tuple[Optional[str], dict]:
    """The front end of the trial: searched among the study's front ends when there are several
    (``frontend``), else the one there is (a constant). Returns (name or None, constants)."""
    if len(frontends) > 1:
        return trial.suggest_categorical("frontend", list(frontends)), {}
    if len(frontends) == 1:
        return frontends[0], {"frontend": frontends[0]}
    return None, {}


def _learning_rate(trial) -> None:
    # Disjoint ranges keep lr_end < lr_start for every draw (papers: 5e-3 -> 5e-4, 5e-4 -> 5e-5).
    trial.suggest_float("lr_start", 2.5e-4, 5e-3, log=True)
    trial.suggest_float("lr_end", 1e-5, 2e-4, log=True)


def _reconstruction(trial, frontend: Optional[str]) -> None:
    """Divergence, then the likelihood, and the KL weight. The IS / KL divergences need a front end
    that de-normalises to a linear magnitude, the Bernoulli likelihood one in [0, 1]: a
    real-valued front end (CMN, CMVN, none) takes the Gaussian likelihoods. lambda multiplies the
    KL terms against a reconstruction summed over every real bin, for every divergence alike, so
    one log-scaled range serves all three; measured on FSDD the useful values span two decades."""
    preset = PRESETS.get(frontend) if frontend else None
    if preset is not None and not preset.bounded:
        trial.suggest_categorical("likelihood", REAL_LIKELIHOODS)
    elif preset is not None and not preset.invertible:
        trial.suggest_categorical("likelihood", LIKELIHOODS)
    elif trial.suggest_categorical("divergence", DIVERGENCES) == "euc":
        trial.suggest_categorical("likelihood", LIKELIHOODS)
    trial.suggest_float("lam", 0.05, 20.0, log=True)


def _stabilisers(trial) -> None:
    """The training stabilisers both models share (trainables.config, docs/MODELS.md), and the
    network family with what applies to it (``pool`` to the convolutional-recurrent encoder,
    ``mlp_hidden`` to the fully connected one)."""
    trial.suggest_categorical("dec_bias_init", ["data_mean", "zero"])
    trial.suggest_categorical("bn_reestimate", [True, False])
    if trial.suggest_categorical("encoder", ENCODERS) == "conv":
        trial.suggest_categorical("pool", ["mean", "last"])
    else:
        trial.suggest_categorical("mlp_hidden", MLP_HIDDEN_CHOICES)


def _invariance(trial, frontend: Optional[str]) -> dict:
    """Augmented and neighbour views with a consistency term (an overclustering head, self-labelling, an
    instance contrast) and test-time views, free bits, on real-valued front ends a style factor, and on
    front ends normalised per speaker the clusters' independence of the speaker (docs/MODELS.md,
    "Invariance"). Returns the constants that switch off what a draw leaves out, so that a recipe's
    values for those keys (the ``recommended`` recipe's consistency term and style factor) never reach
    a trial they do not fit: no consistency term without views, no style factor on a front end in
    [0, 1], no test-time views without an augmenter."""
    consts: dict = {}
    augmented = trial.suggest_categorical("augment", AUGMENT_CHOICES) != "none"
    if trial.suggest_categorical("neighbours", NEIGHBOUR_CHOICES) > 0 or augmented:
        trial.suggest_categorical("consistency", ["mi", "skl"])
        trial.suggest_float("consistency_weight", 1.0, 300.0, log=True)
        trial.suggest_categorical("overcluster", [0, 5])
        trial.suggest_categorical("self_label", SELF_LABEL_CHOICES)
        if trial.suggest_categorical("contrastive", CONTRASTIVE_CHOICES) > 0:
            trial.suggest_categorical("contrastive_temperature", [0.1, 0.5])
        if augmented:
            trial.suggest_float("aug_warp", 0.02, 0.2)
    else:
        consts.update(consistency="none", overcluster=0, self_label=0.0, contrastive=0.0)
    if augmented:  # test-time views are made by the augmenter (a neighbour is no view of the clip itself)
        trial.suggest_categorical("tta_views", TTA_CHOICES)
    else:
        consts["tta_views"] = 0
    trial.suggest_categorical("free_bits", [0.0, 0.25, 1.0])
    preset = PRESETS.get(frontend) if frontend else None
    if preset is not None and not preset.bounded:
        if trial.suggest_categorical("style_clusters", [0, 4, 8]) > 0:
            trial.suggest_categorical("style_independence", [0.0, 3.0, 10.0])  # the styles standing in for speakers
        else:
            consts["style_independence"] = 0.0
    elif preset is not None:
        consts.update(style_clusters=0, style_independence=0.0)
    if preset is not None and preset.per_speaker:  # the table names the speakers (given or inferred)
        trial.suggest_categorical("speaker_independence", [0.0, 3.0, 10.0, 30.0])
    elif preset is not None:
        consts["speaker_independence"] = 0.0
    return consts


def _aligned(frontends: Sequence[str]) -> list[str]:
    """``["aligned"]`` (the models' starts from the per-speaker clusters matched across speakers, which
    read the speaker ids) when every front end of the study is normalised per speaker, else none: a
    choice list fixed for the whole study, whatever front end a trial draws."""
    presets = [PRESETS.get(f) for f in frontends]
    if presets and all(p is not None and p.per_speaker for p in presets):
        return ["aligned"]
    return []


def uvac(trial, *, epochs: int = 1, frontends: Sequence[str] = ()) -> dict:
    """UVAC with a learnable GMM prior: front end, latent size, likelihood, KL weight, learning rates, prior init,
    invariance."""
    frontend, consts = _frontend(trial, frontends)
    trial.suggest_int("d_z", 4, 32, log=True)
    _reconstruction(trial, frontend)
    _learning_rate(trial)
    _stabilisers(trial)
    consts.update(_invariance(trial, frontend))
    if trial.suggest_categorical("prior_init", ["fit", "paper", *_aligned(frontends)]) != "paper":
        trial.suggest_int("prior_warmup_epochs", 1, max(1, int(epochs) // 2))
        trial.suggest_categorical("prior_styles", [0, 4, 6])  # a factorial (content x style) prior
    return {"model": "uvac", **consts}


def cat_uvac(trial, *, epochs: int = 1, frontends: Sequence[str] = ()) -> dict:
    """Categorical UVAC (Gumbel-Softmax): UVAC's knobs, the temperature schedule, category use."""
    frontend, consts = _frontend(trial, frontends)
    trial.suggest_int("d_z", 2, 32, log=True)
    _reconstruction(trial, frontend)
    _learning_rate(trial)
    _stabilisers(trial)
    consts.update(_invariance(trial, frontend))
    trial.suggest_float("marginal_entropy_weight", 0.0, 20.0)
    trial.suggest_float("kl_z_weight", 0.5, 8.0, log=True)
    trial.suggest_categorical("gumbel_hard", [False, True])
    if trial.suggest_categorical("head_init", ["random", "fit", *_aligned(frontends)]) != "random":  # VaDE's start
        trial.suggest_int("head_warmup_epochs", 1, max(1, int(epochs) // 2))
    kind = trial.suggest_categorical("tau_kind", TAU_KINDS)
    trial.suggest_float("tau_start", 0.7, 2.0)
    if kind != "constant":
        trial.suggest_float("tau_end", 0.1, 0.7)
        trial.suggest_int("tau_anneal_epochs", 1, max(1, int(epochs)))
    return {"model": "cat_uvac", **consts}


def kmeans(trial, *, epochs: int = 1, frontends: Sequence[str] = ()) -> dict:
    """K-means on the flattened input features: only the seed varies."""
    _, consts = _frontend(trial, frontends)
    trial.suggest_int("seed", 0, 9)
    return {"model": "kmeans", **consts}


def gmm(trial, *, epochs: int = 1, frontends: Sequence[str] = ()) -> dict:
    """GMM-EM on the flattened input features: covariance type and seed."""
    _, consts = _frontend(trial, frontends)
    trial.suggest_categorical("gmm_covariance", list(COVARIANCE_TYPES))
    trial.suggest_int("seed", 0, 9)
    return {"model": "gmm", **consts}


class SpaceRegistry(dict):
    """name -> space function. A space of one's own (a registered model's, say) joins with
    ``SPACES[name] = fn``; the study runs it in the driver (Optuna's sampler), never in a worker."""

    def trains_network(self, name: str) -> bool:
        """Whether the space's ``model`` constant is a registered network (not a baseline)."""
        from trainables.models import model_class

        model = (get_space(name, epochs=1)(RecordingTrial()) or {}).get("model")
        return model is not None and model_class(str(model)) is not None


SPACES: SpaceRegistry = SpaceRegistry({
    "uvac": uvac,
    "cat_uvac": cat_uvac,
    "kmeans": kmeans,
    "gmm": gmm,
})


def get_space(name: str, *, epochs: int, frontends: Sequence[str] = ()) -> Callable[[Any], Optional[dict]]:
    """The define-by-run function for ``name`` bound to the study's epoch count and front ends."""
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; choose one of {', '.join(sorted(SPACES))}")
    fn = SPACES[name]
    if "frontends" not in inspect.signature(fn).parameters:  # a space that does not search front ends
        return functools.partial(fn, epochs=int(epochs))
    return functools.partial(fn, epochs=int(epochs), frontends=tuple(frontends or ()))


class RecordingTrial:
    """A fake trial that records every ``suggest_*`` call and answers with a default value.

    Used to print a space without a duplicated description: the space function itself
    is run against it. Branches not taken with the default answers are explored by
    re-running with every categorical choice (see :func:`describe_space`).
    """

    def __init__(self, choose: Optional[dict] = None):
        self.calls: list[dict] = []
        self._choose = choose or {}

    def _record(self, name: str, **info: Any) -> None:
        if not any(c["name"] == name for c in self.calls):
            self.calls.append({"name": name, **info})

    def suggest_float(self, name, low, high, *, step=None, log=False):
        self._record(name, kind="float", low=low, high=high, step=step, log=log)
        return self._choose.get(name, low)

    def suggest_int(self, name, low, high, *, step=1, log=False):
        self._record(name, kind="int", low=low, high=high, step=step, log=log)
        return self._choose.get(name, low)

    def suggest_categorical(self, name, choices):
        self._record(name, kind="categorical", choices=list(choices))
        return self._choose.get(name, choices[0])


def record_space(name: str, *, epochs: int = 10, frontends: Sequence[str] = ()) -> tuple[list[dict], dict]:
    """Run the space on recording trials, one pass per categorical choice, so that
    conditional parameters show up; returns (parameters in first-seen order, constants)."""
    fn = get_space(name, epochs=epochs, frontends=frontends)
    seen: list[dict] = []
    constants: dict = {}
    conditional: dict[str, set] = {}
    first = RecordingTrial()
    constants = fn(first) or {}
    seen.extend(first.calls)
    base_names = {c["name"] for c in first.calls}
    absent: dict[str, set] = {}  # parameters of the default pass that another choice drops
    for call in list(first.calls):
        if call["kind"] != "categorical":
            continue
        for choice in call["choices"][1:]:
            rec = RecordingTrial({call["name"]: choice})
            fn(rec)
            for name in base_names - {c["name"] for c in rec.calls}:
                absent.setdefault(name, set()).add(f"{call['name']}={choice}")
            for c in rec.calls:
                if c["name"] not in base_names and not any(s["name"] == c["name"] for s in seen):
                    seen.append(c)
                conditional.setdefault(c["name"], set()).add(f"{call['name']}={choice}")
    # Parameters absent on the default pass only exist under some choices.
    for c in seen:
        if c["name"] not in base_names:
            c["when"] = sorted(conditional.get(c["name"], ()))
        elif c["name"] in absent:
            c["unless"] = sorted(absent[c["name"]])
    return seen, constants


def format_param(c: dict) -> str:
    if c["kind"] == "categorical":
        dom = "{" + ", ".join(map(str, c["choices"])) + "}"
    else:
        dom = f"[{c['low']:g}, {c['high']:g}]" + (" log" if c.get("log") else "")
        if c["kind"] == "int":
            dom = "int " + dom
    when = f"  (only when {' or '.join(c['when'])})" if c.get("when") else ""
    if c.get("unless"):
        when += f"  (not when {' or '.join(c['unless'])})"
    return f"  {c['name']:<20} {dom}{when}"


def describe_space(name: str, *, epochs: int = 10, frontends: Sequence[str] = ()) -> str:
    params, constants = record_space(name, epochs=epochs, frontends=frontends)
    doc = (SPACES[name].__doc__ or "").strip().splitlines()[0] if SPACES[name].__doc__ else ""
    lines = [f"space {name}: {doc}", f"  (bounds that follow --epochs are shown for epochs={epochs})"]
    lines += [format_param(c) for c in params]
    for k, v in constants.items():
        lines.append(f"  {k:<20} = {v!r}")
    return "\n".join(lines)


def list_spaces() -> str:
    out = []
    for name in SPACES:
        params, _ = record_space(name)
        doc = (SPACES[name].__doc__ or "").strip().splitlines()[0]
        out.append(f"{name:<10} {len(params):>2} parameter{'s' * (len(params) != 1):<1}  {doc}")
    return "\n".join(out)
