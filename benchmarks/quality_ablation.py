"""The ablation ``benchmarks.quality`` runs: ``recommended`` with each of its settings switched back
to the paper's, one group of keys at a time, most informative first, and ``--ablate``'s choice and
order of those settings."""
from __future__ import annotations

__all__ = ["ABLATION_GROUPS", "ablatable_keys", "ablation_settings", "select_ablation"]

# settings switched off together: one schedule; the views with what compares them (consistency
# needs augment, overcluster needs consistency); the prior's fit with its warm-up
ABLATION_GROUPS = (("lr_start", "lr_end"),
                   ("augment", "aug_speed", "aug_warp", "aug_shift", "aug_eq", "consistency", "consistency_weight",
                    "overcluster"),
                   ("prior_init", "prior_warmup_epochs"),
                   ("head_init", "head_warmup_epochs"),
                   ("contrastive", "contrastive_temperature"),
                   ("tau_kind", "tau_start"),
                   ("restarts", "restart_combine"))


def ablation_settings(model: str, frontend) -> list[dict]:
    """``recommended``'s settings that differ from the paper's on ``frontend``, one group at a time
    (:data:`ABLATION_GROUPS`: the learning-rate schedule is one setting, the restarts and their vote
    another): the values that switch each back to the paper's. On a front end normalised per speaker
    the recipe's per-speaker values (``SPEAKER_NORMALISED``: the vote, the speaker independence, the
    aligned starts, ...) are ablated too. A key without effect under the recipe (``pool`` with the
    fully connected encoder: ``Key.applies_when``) is left out."""
    from trainables.config import RECIPES, REAL_VALUED, SPEAKER_NORMALISED, all_keys, resolve_config

    paper = resolve_config({"model": model, "recipe": "paper"}, preset=frontend)
    rec = resolve_config({"model": model, "recipe": "recommended"}, preset=frontend)
    defs = all_keys()
    per_speaker = SPEAKER_NORMALISED["recommended"].get(model, {}) if getattr(frontend, "per_speaker", False) else {}
    keys = [k for k in {**RECIPES["recommended"][model], **REAL_VALUED.get("recommended", {}).get(model, {}),
                        **per_speaker}
            if paper[k] != rec[k] and defs[k].applies(rec)]
    groups = [tuple(k for k in g if k in keys) for g in ABLATION_GROUPS]
    groups = [g for g in groups if g]
    singles = [(k,) for k in keys if not any(k in g for g in groups)]
    # the groups first (the views with their consistency, the prior's fit, the schedule), then the
    # style factor, then the rest: a benchmark stopped early has measured what matters most
    first = [g for g in singles if g[0] in ("style_clusters", "likelihood", "marginal_entropy_weight")]
    rest = [g for g in singles if g not in first]
    return [{k: paper[k] for k in group} for group in [*reversed(groups), *first, *rest]]


def ablatable_keys(settings: list[dict]) -> list[str]:
    """Every config key some setting of ``settings`` switches back (what ``--ablate`` may name)."""
    return list(dict.fromkeys(k for off in settings for k in off))


def select_ablation(settings: list[dict], keys: list[str] | None) -> list[dict]:
    """The settings of ``settings`` that switch back any of ``keys`` (``--ablate``), in the order
    ``keys`` names them (a setting named by two of its keys comes once, at the first); a key no
    setting switches selects nothing (``benchmarks.quality.check_ablate`` refuses a key no model's
    ablation switches, before any run). ``None``: every setting, in ``settings``' order."""
    if keys is None:
        return list(settings)
    chosen: list[dict] = []
    for key in keys:
        off = next((o for o in settings if key in o), None)
        if off is not None and off not in chosen:
            chosen.append(off)
    return chosen
