"""Trainers: models, losses, schedules, metrics, baselines, the training loop and its CLIs.

Importing the package imports nothing else: ``trainables.metrics`` (numpy, scikit-learn) can be
read without torch (the analysis does), while ``trainables.config`` builds on the model
registry (torch). The loop is ``from trainables.loop import train`` (``trainables.train`` is
the CLI module).
"""
