"""Search spaces: define-by-run functions over an ``optuna.Trial`` that compute nothing.

Each space is ``fn(trial, *, epochs) -> dict of constants``; ``OptunaSearch`` receives
``functools.partial(fn, epochs=...)``. The suggested values plus the returned constants
become the trial's config (the only interface between search and training).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

DIVERGENCES = ["euc", "is", "kl"]
LIKELIHOODS = ["gaussian", "bernoulli", "gaussian_learned", "gaussian_learned_freq"]
TAU_KINDS = ["constant", "linear", "exponential", "cosine"]


def _learning_rate(trial) -> None:
    # Disjoint ranges keep lr_end < lr_start for every draw (papers: 5e-3 -> 5e-4, 5e-4 -> 5e-5).
    trial.suggest_float("lr_start", 2.5e-4, 5e-3, log=True)
    trial.suggest_float("lr_end", 1e-5, 2e-4, log=True)


def _reconstruction(trial) -> None:
    """Divergence, then the likelihood (the alternatives to the papers' Gaussian are defined on
    the normalised spectrogram: only under ``euc``), and the KL weight. lambda multiplies the KL
    terms against a reconstruction summed over every real bin, for every divergence alike, so
    one log-scaled range serves all three; measured on FSDD the useful values span two decades."""
    if trial.suggest_categorical("divergence", DIVERGENCES) == "euc":
        trial.suggest_categorical("likelihood", LIKELIHOODS)
    trial.suggest_float("lam", 0.05, 20.0, log=True)


def _stabilisers(trial) -> None:
    """The training stabilisers both models share (trainables.config, docs/MODELS.md)."""
    trial.suggest_categorical("dec_bias_init", ["data_mean", "zero"])
    trial.suggest_categorical("bn_reestimate", [True, False])
    trial.suggest_categorical("pool", ["mean", "last"])


def uvac(trial, *, epochs: int = 1) -> dict:
    """UVAC with a learnable GMM prior: latent size, likelihood, KL weight, learning rates, prior init."""
    trial.suggest_int("d_z", 4, 32, log=True)
    _reconstruction(trial)
    _learning_rate(trial)
    _stabilisers(trial)
    if trial.suggest_categorical("prior_init", ["fit", "paper"]) == "fit":
        trial.suggest_int("prior_warmup_epochs", 1, max(1, int(epochs) // 2))
    return {"model": "uvac"}


def cat_uvac(trial, *, epochs: int = 1) -> dict:
    """Categorical UVAC (Gumbel-Softmax): UVAC's knobs, the temperature schedule, category use."""
    trial.suggest_int("d_z", 2, 32, log=True)
    _reconstruction(trial)
    _learning_rate(trial)
    _stabilisers(trial)
    trial.suggest_float("marginal_entropy_weight", 0.0, 20.0)
    trial.suggest_float("kl_z_weight", 0.5, 8.0, log=True)
    trial.suggest_categorical("gumbel_hard", [False, True])
    kind = trial.suggest_categorical("tau_kind", TAU_KINDS)
    trial.suggest_float("tau_start", 0.7, 2.0)
    if kind != "constant":
        trial.suggest_float("tau_end", 0.1, 0.7)
        trial.suggest_int("tau_anneal_epochs", 1, max(1, int(epochs)))
    return {"model": "cat_uvac"}


def kmeans(trial, *, epochs: int = 1) -> dict:
    """K-means on the flattened input features: only the seed varies."""
    trial.suggest_int("seed", 0, 9)
    return {"model": "kmeans"}


def gmm(trial, *, epochs: int = 1) -> dict:
    """GMM-EM on the flattened input features: covariance type and seed."""
    trial.suggest_categorical("gmm_covariance", ["diag", "spherical", "full", "tied"])
    trial.suggest_int("seed", 0, 9)
    return {"model": "gmm"}


SPACES: dict[str, Callable[..., Optional[dict]]] = {
    "uvac": uvac,
    "cat_uvac": cat_uvac,
    "kmeans": kmeans,
    "gmm": gmm,
}


def get_space(name: str, *, epochs: int) -> Callable[[Any], Optional[dict]]:
    """The define-by-run function for ``name`` bound to the study's epoch count."""
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; choose one of {', '.join(sorted(SPACES))}")
    return functools.partial(SPACES[name], epochs=int(epochs))


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

    def suggest_uniform(self, name, low, high):  # pragma: no cover - legacy API
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name, low, high):  # pragma: no cover - legacy API
        return self.suggest_float(name, low, high, log=True)


def record_space(name: str, *, epochs: int = 10) -> tuple[list[dict], dict]:
    """Run the space on recording trials, one pass per categorical choice, so that
    conditional parameters show up; returns (parameters in first-seen order, constants)."""
    fn = get_space(name, epochs=epochs)
    seen: list[dict] = []
    constants: dict = {}
    conditional: dict[str, set] = {}
    first = RecordingTrial()
    constants = fn(first) or {}
    seen.extend(first.calls)
    base_names = {c["name"] for c in first.calls}
    for call in list(first.calls):
        if call["kind"] != "categorical":
            continue
        for choice in call["choices"][1:]:
            rec = RecordingTrial({call["name"]: choice})
            fn(rec)
            for c in rec.calls:
                if c["name"] not in base_names and not any(s["name"] == c["name"] for s in seen):
                    seen.append(c)
                conditional.setdefault(c["name"], set()).add(f"{call['name']}={choice}")
    # Parameters absent on the default pass only exist under some choices.
    for c in seen:
        if c["name"] not in base_names:
            c["when"] = sorted(conditional.get(c["name"], ()))
    return seen, constants


def format_param(c: dict) -> str:
    if c["kind"] == "categorical":
        dom = "{" + ", ".join(map(str, c["choices"])) + "}"
    else:
        dom = f"[{c['low']:g}, {c['high']:g}]" + (" log" if c.get("log") else "")
        if c["kind"] == "int":
            dom = "int " + dom
    when = f"  (only when {' or '.join(c['when'])})" if c.get("when") else ""
    return f"  {c['name']:<20} {dom}{when}"


def describe_space(name: str, *, epochs: int = 10) -> str:
    params, constants = record_space(name, epochs=epochs)
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
