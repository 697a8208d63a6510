"""Shared convolutional-recurrent blocks of UVAC and categorical UVAC (docs/MODELS.md, "Models").

Shape conventions (F = frequency rows, T = time frames, both >= 2**L for L conv layers; the
models take as many of the configured ``channels`` as the input allows, :func:`fit_depth`):

* :class:`ConvEncoder`: ``[B, C_in, F, T] -> [B, gru_hidden]``. L Conv2d (kernel 8, stride 2,
  padding 3), each followed by BatchNorm2d and ReLU, take ``F x T`` to the final grid
  ``F_L x T_L`` (each conv maps a size ``n`` to ``n // 2``). The feature map is then read as a
  sequence over the remaining time steps, one vector of ``channels[-1] * F_L`` values per step,
  by two GRU layers. The clip summary is the **last hidden state of the top GRU layer**
  (``pool="last"``; the GRU has read every step by then; the papers do not say which summary
  they take). ``pool="mean"`` averages the GRU outputs over the steps that cover real audio:
  the frame mask is carried through the convolutions (a step is real when its receptive field
  holds a real frame), so short clips are not summarised by the padding frames after them.
* :class:`ConvDecoder`: ``[B, in_features] -> [B, 1, F, T]``. A linear layer (no activation,
  as the papers' latent layers) to ``channels[-1] x F_L x T_L``, then L ConvTranspose2d with
  the same kernel/stride/padding mirroring the encoder channels down to 1, ReLU after each but
  the last. **Shape fix**: a transposed conv with k=8, s=2, p=3 maps ``m`` to
  ``2*m + output_padding``; the encoder maps ``n`` to ``n // 2``; so the layer that undoes the
  conv of input size ``n`` uses ``output_padding = n % 2`` (per axis), and the output is exactly
  ``F x T`` for every input size (128x99 -> 128x99, no crop or pad needed).
* Final activation: ``"sigmoid"`` (Euclidean divergence on [0, 1] targets) or ``None``
  (IS / generalised KL: the decoder output is ``log v`` of the de-normalised spectrogram).

Initialisation (papers): Kaiming-uniform weights for every conv, transposed conv, linear and GRU
weight matrix; zero biases; BatchNorm at weight 1, bias 0.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

__all__ = [
    "ENCODERS",
    "POOLS",
    "parse_channels",
    "parse_widths",
    "KERNEL",
    "STRIDE",
    "PADDING",
    "conv_out_size",
    "encoder_grid",
    "ConvEncoder",
    "ConvDecoder",
    "init_weights",
    "as_image",
    "broadcast_cat",
    "fit_depth",
]

# how the encoder summarises the GRU outputs over time (ConvEncoder)
POOLS = ("last", "mean")
# the networks' family (config key ``encoder``): these blocks, or trainables.models.mlp_blocks
ENCODERS = ("conv", "mlp")


def parse_widths(spec: str | list | tuple, key: str, example: str) -> tuple[int, ...]:
    """Layer widths: ``"16,32,64,128"`` -> ``(16, 32, 64, 128)``; a ``ValueError`` naming ``key``
    (with ``example``) on anything else (trainables.config turns it into a ConfigError)."""
    if isinstance(spec, (list, tuple)):
        parts = list(spec)
    else:
        parts = [p for p in str(spec).replace(" ", "").split(",") if p != ""]
    message = f"{key}: expected comma-separated positive integers like '{example}', got {spec!r}"
    try:
        out = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not out or any(c <= 0 for c in out):
        raise ValueError(message)
    return out


def parse_channels(spec: str | list | tuple) -> tuple[int, ...]:
    """The encoder's channels per layer (:func:`parse_widths` for the key ``channels``)."""
    return parse_widths(spec, "channels", "16,32,64,128")

KERNEL, STRIDE, PADDING = 8, 2, 3


def conv_out_size(n: int) -> int:
    """Output length of one Conv2d(k=8, s=2, p=3) along an axis of length ``n`` (= n // 2)."""
    return (n + 2 * PADDING - KERNEL) // STRIDE + 1


def encoder_grid(n_freq: int, n_frames: int, n_layers: int) -> list[tuple[int, int]]:
    """Sizes ``[(F, T), (F_1, T_1), ..., (F_L, T_L)]`` through ``n_layers`` convs.

    Raises ValueError when an axis would shrink below 1 (an axis needs >= 2**n_layers values).
    """
    sizes = [(int(n_freq), int(n_frames))]
    for _ in range(n_layers):
        f, t = sizes[-1]
        sizes.append((conv_out_size(f), conv_out_size(t)))
    f_l, t_l = sizes[-1]
    if f_l < 1 or t_l < 1:
        need = 2 ** n_layers
        raise ValueError(
            f"input {n_freq} x {n_frames} is too small for {n_layers} stride-2 conv layers: "
            f"each of F and T must be >= {need}"
        )
    return sizes


def fit_depth(channels: Sequence[int], n_freq: int, n_frames: int) -> tuple[int, ...]:
    """The encoder depth follows the input size: the first L of ``channels``, L = the most stride-2
    layers both axes allow (each axis >= 2**L), at most ``len(channels)``. 128 x 99 keeps the
    papers' 4 layers; 20 x 16 keeps 4; 13 x 10 gets 3. ValueError when not even one fits."""
    smallest = min(int(n_freq), int(n_frames))
    if smallest < 2:
        raise ValueError(f"input {n_freq} x {n_frames} is too small for a stride-2 conv layer: "
                         f"each of F and T must be >= 2")
    return tuple(int(c) for c in channels)[: min(len(channels), int(math.floor(math.log2(smallest))))]


def init_weights(module: nn.Module) -> None:
    """Kaiming-uniform weights and zero biases for conv / transposed conv / linear / GRU layers."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.GRU):
            for name, p in m.named_parameters():
                if name.startswith("weight"):
                    nn.init.kaiming_uniform_(p)
                elif name.startswith("bias"):
                    nn.init.zeros_(p)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def as_image(x: torch.Tensor, n_freq: int, n_frames: int) -> tuple[torch.Tensor, bool]:
    """``[B, F, T]`` or ``[B, 1, F, T]`` -> (``[B, 1, F, T]``, had_channel_axis); checks F x T."""
    if x.ndim == 3:
        img, had = x.unsqueeze(1), False
    elif x.ndim == 4 and x.shape[1] == 1:
        img, had = x, True
    else:
        raise ValueError(f"expected x of shape [B, F, T] or [B, 1, F, T], got {tuple(x.shape)}")
    if img.shape[2] != n_freq or img.shape[3] != n_frames:
        raise ValueError(
            f"model built for {n_freq} x {n_frames} (F x T) inputs, got {img.shape[2]} x {img.shape[3]}"
        )
    return img, had


def broadcast_cat(x: torch.Tensor, *vectors: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x [B, C, F, T]`` with vectors ``[B, K]`` along channels, broadcasting each
    vector over F x T (``[B, K] -> [B, K, F, T]``); the papers' rule for concatenated inputs."""
    b, _, f, t = x.shape
    parts = [x]
    for v in vectors:
        if v.ndim != 2 or v.shape[0] != b:
            raise ValueError(f"expected a [B={b}, K] vector to concatenate, got {tuple(v.shape)}")
        parts.append(v.to(x.dtype)[:, :, None, None].expand(b, v.shape[1], f, t))
    return torch.cat(parts, dim=1)


class ConvEncoder(nn.Module):
    """Conv2d x L (BatchNorm2d + ReLU) then a 2-layer GRU over time: ``[B, C_in, F, T] -> [B, H]``."""

    def __init__(
        self,
        in_channels: int,
        n_freq: int,
        n_frames: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        gru_hidden: int = 128,
        gru_layers: int = 2,
        pool: str = "last",
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool: expected 'last' or 'mean', got {pool!r}")
        channels = tuple(int(c) for c in channels)
        if not channels or any(c <= 0 for c in channels):
            raise ValueError(f"channels: expected positive integers, got {channels!r}")
        self.in_channels = int(in_channels)
        self.n_freq, self.n_frames = int(n_freq), int(n_frames)
        self.channels = channels
        self.grid = encoder_grid(n_freq, n_frames, len(channels))
        self.pool = pool
        layers: list[nn.Module] = []
        c_prev = self.in_channels
        for c in channels:
            layers += [nn.Conv2d(c_prev, c, KERNEL, STRIDE, PADDING), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_prev = c
        self.convs = nn.Sequential(*layers)
        f_l, _t_l = self.grid[-1]
        self.gru = nn.GRU(channels[-1] * f_l, int(gru_hidden), num_layers=int(gru_layers), batch_first=True)
        self.out_features = int(gru_hidden)
        init_weights(self)

    def step_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Frame mask ``[B, T]`` -> mask of the GRU steps ``[B, T_L]`` (max over each receptive field)."""
        m = mask.float()[:, None, :]
        for _ in self.channels:
            m = nn.functional.max_pool1d(m, KERNEL, STRIDE, PADDING)
        return m[:, 0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[B, C_in, F, T]`` (mask ``[B, T]``, used by ``pool="mean"``) -> ``[B, gru_hidden]``."""
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, self.n_freq, self.n_frames):
            raise ValueError(
                f"ConvEncoder expects [B, {self.in_channels}, {self.n_freq}, {self.n_frames}], got {tuple(x.shape)}"
            )
        h = self.convs(x)  # [B, C_L, F_L, T_L]
        b, c, f, t = h.shape
        seq = h.permute(0, 3, 1, 2).reshape(b, t, c * f)  # [B, T_L, C_L * F_L]
        out, _ = self.gru(seq)  # [B, T_L, H]
        if self.pool == "mean":
            if mask is None:
                return out.mean(dim=1)
            w = self.step_mask(mask).to(out.dtype)  # [B, T_L]
            w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))  # all-padding clip: plain mean
            return (out * w[:, :, None]).sum(1) / w.sum(1, keepdim=True)
        return out[:, -1]


class ConvDecoder(nn.Module):
    """Linear to the encoder's final grid, then L ConvTranspose2d: ``[B, D] -> [B, 1, F, T]``."""

    def __init__(
        self,
        in_features: int,
        n_freq: int,
        n_frames: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        final_activation: str | None = "sigmoid",
    ):
        super().__init__()
        if final_activation not in ("sigmoid", None):
            raise ValueError(f"final_activation: expected 'sigmoid' or None, got {final_activation!r}")
        channels = tuple(int(c) for c in channels)
        self.in_features = int(in_features)
        self.n_freq, self.n_frames = int(n_freq), int(n_frames)
        self.channels = channels
        self.grid = encoder_grid(n_freq, n_frames, len(channels))
        self.final_activation = final_activation
        f_l, t_l = self.grid[-1]
        self.fc = nn.Linear(self.in_features, channels[-1] * f_l * t_l)
        outs = list(reversed(channels[:-1])) + [1]  # (64, 32, 16, 1) for the paper's channels
        ins = list(reversed(channels))
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(ins, outs)):
            f_target, t_target = self.grid[len(channels) - 1 - i]
            op = (f_target % 2, t_target % 2)  # 2*m + op == target size, exactly
            layers.append(nn.ConvTranspose2d(c_in, c_out, KERNEL, STRIDE, PADDING, output_padding=op))
            if i < len(channels) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.deconvs = nn.Sequential(*layers)
        init_weights(self)

    @torch.no_grad()
    def set_output_bias(self, value: float) -> None:
        """Set the last transposed convolution's bias (one output channel) to ``value``."""
        last = [m for m in self.deconvs if isinstance(m, nn.ConvTranspose2d)][-1]
        last.bias.fill_(float(value))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """v ``[B, in_features]`` -> ``[B, 1, F, T]`` (sigmoid-ed or log v, see the module doc)."""
        if v.ndim != 2 or v.shape[1] != self.in_features:
            raise ValueError(f"ConvDecoder expects [B, {self.in_features}], got {tuple(v.shape)}")
        f_l, t_l = self.grid[-1]
        h = self.fc(v).view(v.shape[0], self.channels[-1], f_l, t_l)
        out = self.deconvs(h)
        if out.shape[2:] != (self.n_freq, self.n_frames):  # cannot happen by construction; guard anyway
            raise RuntimeError(f"decoder produced {tuple(out.shape[2:])}, expected {(self.n_freq, self.n_frames)}")
        if self.final_activation == "sigmoid":
            out = torch.sigmoid(out)
        return out
