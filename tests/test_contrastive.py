"""The instance contrast (trainables.contrastive) is honoured: NT-Xent on a known case, both models
add it with its weight from the first epoch on (UVAC too: it shapes the features its prior is fitted
on), it trains the encoder through the projection head, and configs that would ignore it are refused."""
from __future__ import annotations

import math

import pytest
import torch

from features.frontend import get_preset
from trainables.augment import augmenter_for
from trainables.config import ConfigError, resolve_config
from trainables.contrastive import ProjectionHead, nt_xent
from trainables.models import MODELS, Batch

from tests.conftest import TINY_NET as TINY
from tests.test_invariance import STRENGTHS, _features

pytestmark = pytest.mark.usefixtures("one_thread")


def test_nt_xent_of_a_known_case():
    t = 0.5
    eye = torch.eye(4)  # identical views, the clips mutually orthogonal
    assert float(nt_xent(eye, eye, t)) == pytest.approx(math.log(1 + 6 * math.exp(-1 / t)), rel=1e-5)
    # invariant to each row's length (cosine similarity)
    assert float(nt_xent(eye * 3.0, eye * 0.5, t)) == pytest.approx(float(nt_xent(eye, eye, t)), rel=1e-5)
    # views that pick out another clip are worse than views that pick out their own
    swapped = eye[[1, 0, 3, 2]]
    assert float(nt_xent(eye, swapped, t)) > float(nt_xent(eye, eye, t)) + 1.0
    # a colder temperature makes the own-clip case cheaper
    assert float(nt_xent(eye, eye, 0.1)) < float(nt_xent(eye, eye, t))


def test_nt_xent_refuses_what_it_cannot_score():
    with pytest.raises(ValueError, match="two \\[B, D\\]"):
        nt_xent(torch.ones(4, 3), torch.ones(4, 2), 0.5)
    with pytest.raises(ValueError, match="at least 2 clips"):
        nt_xent(torch.ones(1, 3), torch.ones(1, 3), 0.5)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.eye(3), torch.eye(3), 0.0)
    with pytest.raises(ValueError, match="sizes"):
        ProjectionHead(0)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_contrastive_term_enters_the_loss_with_its_weight_and_trains_the_encoder(model):
    preset = get_preset("mfcc")
    x, mask = _features(preset, b=8)
    stats = torch.zeros(8, 4)
    xa, ma = augmenter_for({"augment": "warp,shift", **STRENGTHS}, preset)(x, mask)
    batch = Batch(x, mask, stats).with_view(xa, ma)

    def step(weight):
        torch.manual_seed(0)
        m = MODELS[model](20, 16, n_clusters=3, d_z=2, bounded=False, contrastive=weight,
                          likelihood="gaussian_learned_freq", **TINY)
        if weight > 0:  # the head exists only when the term is on: same draws for the rest with a fixed seed
            torch.manual_seed(0)
            m0 = MODELS[model](20, 16, n_clusters=3, d_z=2, bounded=False, likelihood="gaussian_learned_freq",
                               **TINY)
            m.load_state_dict(m0.state_dict(), strict=False)
        torch.manual_seed(1)
        return m, m.training_step(batch, 0.0)

    _, (t0, terms0) = step(0.0)
    assert "contrastive" not in terms0
    m, (t1, terms1) = step(2.0)  # epoch 0: before UVAC's prior is fitted, the term is already there
    assert float(terms1["contrastive"].detach()) > 0
    assert float((t1 - t0).detach()) == pytest.approx(2.0 * float(terms1["contrastive"].detach()), rel=1e-4)
    t1.backward()
    head = m.projection.net[0].weight.grad
    assert head is not None and float(head.abs().sum()) > 0
    # the encoder receives the contrast's gradient: it differs from the plain loss's
    enc = next(p for n, p in m.named_parameters() if n.startswith(("encoder.", "enc_y.")) and p.grad is not None)
    m_plain, (tp, _) = step(0.0)
    tp.backward()
    enc_plain = dict(m_plain.named_parameters())[next(n for n, p in m.named_parameters() if p is enc)]
    assert not torch.allclose(enc.grad, enc_plain.grad)
    # without a view there is nothing to contrast
    _, terms3 = m.training_step(Batch(x, mask, stats), 0.0)
    assert "contrastive" not in terms3


def test_contrastive_configs_that_would_ignore_it_are_refused():
    with pytest.raises(ConfigError, match="contrastive: .*set augment"):
        resolve_config({"contrastive": 10.0})
    with pytest.raises(ConfigError, match="contrastive > 0"):
        resolve_config({"neighbours": 5})
    cfg = resolve_config({"neighbours": 5, "contrastive": 10.0})  # neighbour views for the contrast alone
    assert cfg["consistency"] == "none" and cfg["contrastive"] == 10.0
    with pytest.raises(ConfigError, match="contrastive_temperature"):
        resolve_config({"augment": "shift", "contrastive": 1.0, "contrastive_temperature": 0.0})
