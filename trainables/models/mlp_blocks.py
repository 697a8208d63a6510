"""Fully connected encoder and decoder (config ``encoder="mlp"``; not in the papers).

The papers' encoder (:class:`~trainables.models.blocks.ConvEncoder`) reads a 128 x 99 spectrogram
with 8 x 8 kernels of stride 2. On the speech front ends' small inputs (``awe``: 13 MFCCs x 10
frames) three such convolutions reduce the clip to one cell of a padding-dominated grid before
the GRU reads it (a single time step); an acoustic word embedding is a fixed-size vector whose
dimensions are not translation-invariant, which is what a fully connected network assumes.

* :class:`MLPEncoder`: ``[B, C_in, F, T] -> [B, hidden[-1]]``. The input flattened, then per
  width in ``hidden``: Linear, BatchNorm1d, ReLU. The frame mask is not needed: every cell of
  a fixed-size input is an input (padding frames are zeros the network sees as such).
* :class:`MLPDecoder`: ``[B, in_features] -> [B, 1, F, T]``. Linear + ReLU through ``hidden``
  reversed, then a linear layer to ``F * T`` values; final activation ``"sigmoid"`` or None, as
  :class:`~trainables.models.blocks.ConvDecoder`.

Initialisation as the convolutional blocks: Kaiming-uniform weights, zero biases.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from trainables.models.blocks import init_weights, parse_widths

__all__ = ["MLPEncoder", "MLPDecoder", "parse_hidden"]


def parse_hidden(spec: str | Sequence[int]) -> tuple[int, ...]:
    """``"256,128"`` (or a sequence) -> (256, 128): positive widths, at least one (key ``mlp_hidden``)."""
    return parse_widths(spec, "mlp_hidden", "256,128")


class MLPEncoder(nn.Module):
    """Flatten, then Linear + BatchNorm1d + ReLU per width: ``[B, C_in, F, T] -> [B, hidden[-1]]``."""

    def __init__(self, in_channels: int, n_freq: int, n_frames: int, hidden: Sequence[int] = (256, 128)):
        super().__init__()
        self.in_channels, self.n_freq, self.n_frames = int(in_channels), int(n_freq), int(n_frames)
        hidden = parse_hidden(hidden)
        layers: list[nn.Module] = []
        width = self.in_channels * self.n_freq * self.n_frames
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            width = h
        self.net = nn.Sequential(*layers)
        self.out_features = int(hidden[-1])
        init_weights(self)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[B, C_in, F, T]`` -> ``[B, hidden[-1]]`` (``mask`` accepted for the encoders' one
        signature, not used)."""
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, self.n_freq, self.n_frames):
            raise ValueError(
                f"MLPEncoder expects [B, {self.in_channels}, {self.n_freq}, {self.n_frames}], got {tuple(x.shape)}")
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """Linear + ReLU through ``hidden`` reversed, then linear to ``F * T``: ``[B, D] -> [B, 1, F, T]``."""

    def __init__(self, in_features: int, n_freq: int, n_frames: int, hidden: Sequence[int] = (256, 128),
                 final_activation: str | None = "sigmoid"):
        super().__init__()
        if final_activation not in ("sigmoid", None):
            raise ValueError(f"final_activation: expected 'sigmoid' or None, got {final_activation!r}")
        self.in_features, self.n_freq, self.n_frames = int(in_features), int(n_freq), int(n_frames)
        self.final_activation = final_activation
        layers: list[nn.Module] = []
        width = self.in_features
        for h in reversed(parse_hidden(hidden)):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.out = nn.Linear(width, self.n_freq * self.n_frames)
        self.net = nn.Sequential(*layers)
        init_weights(self)

    @torch.no_grad()
    def set_output_bias(self, value: float) -> None:
        """Set every output unit's bias to ``value``."""
        self.out.bias.fill_(float(value))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """v ``[B, in_features]`` -> ``[B, 1, F, T]`` (sigmoid-ed or log v)."""
        if v.ndim != 2 or v.shape[1] != self.in_features:
            raise ValueError(f"MLPDecoder expects [B, {self.in_features}], got {tuple(v.shape)}")
        out = self.out(self.net(v)).view(v.shape[0], 1, self.n_freq, self.n_frames)
        return torch.sigmoid(out) if self.final_activation == "sigmoid" else out
