"""Trainers: models, losses, schedules, metrics, baselines, the training loop and its CLIs.

Light to import (no Ray, no torch): the loop is ``from trainables.loop import train``
(``trainables.train`` is the CLI module, so the function is not re-exported under that name).
"""
from trainables.config import DEFAULTS, ConfigError, resolve_config

__all__ = ["DEFAULTS", "ConfigError", "resolve_config", "TrainResult"]


def __getattr__(name):  # lazy: importing trainables must not import torch
    if name == "TrainResult":
        from trainables.loop import TrainResult

        return TrainResult
    raise AttributeError(f"module 'trainables' has no attribute {name!r}")
