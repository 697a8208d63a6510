"""encoder="mlp": the fully connected encoders and decoder both models build when asked (the
model contract runs over both families; this file checks the blocks themselves and the switch)."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_OVERRIDES
from trainables.config import ConfigError, resolve_config
from trainables.models import build_model
from trainables.models.blocks import ConvDecoder, ConvEncoder
from trainables.models.mlp_blocks import MLPDecoder, MLPEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mlp_blocks_map_an_awe_sized_input_to_features_and_back():
    enc, dec = MLPEncoder(3, 13, 10, (32, 16)), MLPDecoder(5, 13, 10, (32, 16))
    x = torch.randn(4, 3, 13, 10)
    assert enc(x).shape == (4, 16) and enc.out_features == 16
    out = dec(torch.randn(4, 5))
    assert out.shape == (4, 1, 13, 10) and (out > 0).all() and (out < 1).all()  # sigmoid
    dec.set_output_bias(2.0)
    assert torch.allclose(dec.out.bias, torch.full((130,), 2.0))
    with pytest.raises(ValueError, match=r"MLPEncoder expects \[B, 3, 13, 10\]"):
        enc(torch.randn(4, 1, 13, 10))
    with pytest.raises(ValueError, match="MLPDecoder expects"):
        dec(torch.randn(4, 6))


@pytest.mark.parametrize("model", ["uvac", "cat_uvac"])
def test_the_encoder_key_chooses_the_networks(model):
    base = {**TINY_OVERRIDES, "model": model, "n_clusters": 4}
    conv = build_model(resolve_config(base), 13, 10, preset=None)
    mlp = build_model(resolve_config({**base, "encoder": "mlp", "mlp_hidden": "24,12"}), 13, 10, preset=None)
    kinds = {type(m) for m in conv.modules()}
    assert ConvEncoder in kinds and ConvDecoder in kinds and MLPEncoder not in kinds
    encoders = [m for m in mlp.modules() if isinstance(m, MLPEncoder)]
    assert encoders and all(e.out_features == 12 for e in encoders)
    assert any(isinstance(m, MLPDecoder) for m in mlp.modules())
    assert not any(isinstance(m, (ConvEncoder, ConvDecoder)) for m in mlp.modules())
    x = torch.rand(5, 13, 10)
    assert mlp.eval().infer(x)["probs"].shape == (5, 4)


def test_a_bad_width_list_names_the_key():
    with pytest.raises(ConfigError, match="mlp_hidden"):
        resolve_config({"model": "uvac", "mlp_hidden": "64,0"})
    with pytest.raises(ConfigError, match="encoder"):
        resolve_config({"model": "uvac", "encoder": "transformer"})


@pytest.mark.parametrize("model", ["uvac", "cat_uvac"])
@pytest.mark.parametrize("shape", [(1, 12), (12, 1)])
def test_only_the_convolutions_need_two_rows_and_two_frames(model, shape):
    """The depth check (stride-2 layers need F, T >= 2) belongs to the convolutional networks: the
    fully connected ones take a 1 x T or F x 1 input (a clip-level feature vector) and train on it."""
    base = {**TINY_OVERRIDES, "model": model, "n_clusters": 3}
    with pytest.raises(ValueError, match="too small for a stride-2 conv layer"):
        build_model(resolve_config(base), *shape, preset=None)
    mlp = build_model(resolve_config({**base, "encoder": "mlp", "mlp_hidden": "16,8"}), *shape, preset=None)
    assert mlp.channels_used == ()
    x = torch.rand(6, *shape)
    out = mlp.train()(x) if model == "uvac" else mlp.train()(x, tau=0.7)
    assert out["recon"].shape == x.shape
    out["recon"].sum().backward()
    grads = [p.grad for p in mlp.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert mlp.eval().infer(x)["probs"].shape == (6, 3)
