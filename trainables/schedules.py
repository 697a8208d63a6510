"""Schedules: pure functions of the (global) epoch, so that a resumed run continues the same curve.

Epochs are 0-based: epoch 0 is the first epoch, ``epochs - 1`` the last. The models and the
loop call ``tau_at`` / ``lr_at`` / ``kl_weight_at`` in one form, ``f(config, epoch, ...)``,
reading the keys of :mod:`trainables.config`; each reads its numbers and evaluates an explicit
curve, ``tau_curve`` / ``lr_curve`` / ``kl_warmup_factor``.

``tau_curve`` -- Gumbel-Softmax temperature at ``t = epoch + frac`` (``frac`` = fraction of the
epoch done, ``step / steps_per_epoch``), annealed from ``start`` (t = 0) to ``end``
(t = ``anneal_epochs``), then held at ``end``; never below ``floor``:

  constant      start
  linear        start + (end - start) * t / A
  exponential   start * (end / start) ** (t / A)
  cosine        end + (start - end) * (1 + cos(pi * t / A)) / 2

``tau_at(config, epoch, frac=0.0)``: keys tau_kind, tau_start, tau_end, tau_anneal_epochs
(0 = the whole run, A = epochs), tau_floor. With A = epochs the temperature
reaches ``end`` at the end of the last epoch (``tau_at(cfg, epochs - 1, 1.0)``).

``lr_curve`` -- exponential decay from ``start`` (epoch 0) to ``end`` (the last epoch,
``total_epochs - 1``): ``start * (end / start) ** (epoch / (total_epochs - 1))`` (the UVAC
paper: 5e-3 -> 5e-4 "at the last epoch"). ``lr_at(config, epoch)``: lr_start, lr_end, epochs.

``kl_warmup_factor`` -- linear KL warm-up factor ``min(1, epoch / warmup_epochs)`` (0 at the
first epoch, 1 from epoch ``warmup_epochs`` on); ``warmup_epochs = 0`` is off (always 1).
``kl_weight_at(config, epoch)`` returns ``config["lam"] * factor``: the full KL
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


def tau_at(config: Mapping[str, Any], epoch: int, frac: float = 0.0) -> float:
    """Temperature at ``epoch + frac`` from the config keys (see the module doc)."""
    anneal = float(config["tau_anneal_epochs"]) or float(config["epochs"])
    return tau_curve(config["tau_kind"], config["tau_start"], config["tau_end"], anneal,
                     float(epoch) + float(frac), config["tau_floor"])


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


def lr_at(config: Mapping[str, Any], epoch: float) -> float:
    """Learning rate at ``epoch`` from the config keys lr_start, lr_end, epochs."""
    return lr_curve(config["lr_start"], config["lr_end"], int(config["epochs"]), epoch)


def kl_warmup_factor(warmup_epochs: float, epoch: float) -> float:
    """``min(1, epoch / warmup_epochs)``; 1.0 when ``warmup_epochs <= 0`` (off)."""
    w = float(warmup_epochs)
    if w <= 0:
        return 1.0
    return min(1.0, max(0.0, float(epoch)) / w)


def kl_weight_at(config: Mapping[str, Any], epoch: float) -> float:
    """The full KL weight at ``epoch``: ``config["lam"]`` times the warm-up factor."""
    return float(config["lam"]) * kl_warmup_factor(config["kl_warmup_epochs"], epoch)
