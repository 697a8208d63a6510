"""Schedules: pure functions of the (global) epoch, so that a resumed run continues the same curve.

Epochs are 0-based: epoch 0 is the first epoch, ``epochs - 1`` the last. Each function has two
call forms:

* the config form of the architecture contract, ``f(config, epoch, ...)``, reading the keys of
  :mod:`trainables.config`;
* the explicit form, ``f(<numbers>..., epoch)``.

``tau_at`` -- Gumbel-Softmax temperature at ``t = epoch + frac`` (``frac`` = fraction of the
epoch done, ``step / steps_per_epoch``), annealed from ``start`` (t = 0) to ``end``
(t = ``anneal_epochs``), then held at ``end``; never below ``floor``:

  constant      start
  linear        start + (end - start) * t / A
  exponential   start * (end / start) ** (t / A)
  cosine        end + (start - end) * (1 + cos(pi * t / A)) / 2

Config form ``tau_at(config, epoch, frac=0.0)``: keys tau_kind, tau_start, tau_end,
tau_anneal_epochs (0 = the whole run, A = epochs), tau_floor. With A = epochs the temperature
reaches ``end`` at the end of the last epoch (``tau_at(cfg, epochs - 1, 1.0)``).

``lr_at`` -- exponential decay from ``start`` (epoch 0) to ``end`` (the last epoch,
``total_epochs - 1``): ``start * (end / start) ** (epoch / (total_epochs - 1))`` (the UVAC
paper: 5e-3 -> 5e-4 "at the last epoch"). Config form ``lr_at(config, epoch)``: lr_start,
lr_end, epochs.

``kl_weight_at`` -- linear KL warm-up factor ``min(1, epoch / warmup_epochs)`` (0 at the first
epoch, 1 from epoch ``warmup_epochs`` on); ``warmup_epochs = 0`` is off (always 1). The
config form ``kl_weight_at(config, epoch)`` returns ``config["lam"] * factor``: the full KL
weight, warmed up "from 0 to lam" (what the trainer passes as the loss's ``lam``).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["TAU_KINDS", "tau_at", "lr_at", "kl_weight_at", "tau_curve", "lr_curve", "kl_warmup_factor"]

TAU_KINDS = ("constant", "linear", "exponential", "cosine")


def tau_curve(kind: str, start: float, end: float, anneal_epochs: float, epoch_float: float,
              floor: float = 0.05) -> float:
    """Temperature at ``epoch_float`` (explicit form; see the module doc)."""
    if kind not in TAU_KINDS:
        raise ValueError(f"tau kind: expected one of {TAU_KINDS}, got {kind!r}")
    start, end, floor = float(start), float(end), float(floor)
    if not (start > 0 and end > 0):
        raise ValueError(f"tau start and end must be > 0, got {start!r}, {end!r}")
    a = float(anneal_epochs)
    t = max(0.0, float(epoch_float))
    if kind == "constant":
        tau = start
    elif a <= 0 or t >= a:
        tau = end
    else:
        r = t / a
        if kind == "linear":
            tau = start + (end - start) * r
        elif kind == "exponential":
            tau = start * (end / start) ** r
        else:  # cosine
            tau = end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * r))
    return max(tau, floor)


def tau_at(*args: Any, **kwargs: Any) -> float:
    """``tau_at(config, epoch, frac=0.0)`` or ``tau_at(kind, start, end, anneal_epochs, epoch_float, floor=0.05)``."""
    if args and isinstance(args[0], Mapping):
        cfg = args[0]
        rest = list(args[1:])
        epoch = rest.pop(0) if rest else kwargs.pop("epoch")
        frac = rest.pop(0) if rest else kwargs.pop("frac", kwargs.pop("step", 0.0))
        anneal = float(cfg.get("tau_anneal_epochs", 0)) or float(cfg["epochs"])
        return tau_curve(cfg["tau_kind"], cfg["tau_start"], cfg["tau_end"], anneal,
                         float(epoch) + float(frac), cfg.get("tau_floor", 0.05))
    return tau_curve(*args, **kwargs)


def lr_curve(start: float, end: float, total_epochs: int, epoch: float) -> float:
    """Exponential decay from ``start`` at epoch 0 to ``end`` at epoch ``total_epochs - 1``."""
    start, end = float(start), float(end)
    if not (start > 0 and end > 0):
        raise ValueError(f"learning rates must be > 0, got {start!r}, {end!r}")
    last = int(total_epochs) - 1
    if last <= 0:
        return start
    r = min(max(float(epoch), 0.0), float(last)) / last
    return start * (end / start) ** r


def lr_at(*args: Any, **kwargs: Any) -> float:
    """``lr_at(config, epoch)`` or ``lr_at(start, end, total_epochs, epoch)``."""
    if args and isinstance(args[0], Mapping):
        cfg = args[0]
        epoch = args[1] if len(args) > 1 else kwargs["epoch"]
        return lr_curve(cfg["lr_start"], cfg["lr_end"], int(cfg["epochs"]), epoch)
    return lr_curve(*args, **kwargs)


def kl_warmup_factor(warmup_epochs: float, epoch: float) -> float:
    """``min(1, epoch / warmup_epochs)``; 1.0 when ``warmup_epochs <= 0`` (off)."""
    w = float(warmup_epochs)
    if w <= 0:
        return 1.0
    return min(1.0, max(0.0, float(epoch)) / w)


def kl_weight_at(*args: Any, **kwargs: Any) -> float:
    """``kl_weight_at(config, epoch)`` -> lam * factor, or ``kl_weight_at(warmup_epochs, epoch)`` -> factor."""
    if args and isinstance(args[0], Mapping):
        cfg = args[0]
        epoch = args[1] if len(args) > 1 else kwargs["epoch"]
        return float(cfg.get("lam", 1.0)) * kl_warmup_factor(cfg.get("kl_warmup_epochs", 0), epoch)
    return kl_warmup_factor(*args, **kwargs)
