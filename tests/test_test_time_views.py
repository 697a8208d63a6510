"""Test-time augmentation (config ``tta_views``, trainables.evaluation.infer_with_views): a clip's
cluster probabilities are their mean over the clip and fixed augmented views of it, a function of the
clip alone, and training is untouched by them."""
from __future__ import annotations

import pytest
import torch

from features.frontend import get_preset
from trainables.augment import augmenter_for
from trainables.config import ConfigError, resolve_config
from trainables.evaluation import infer_with_views
from trainables.loop import train
from trainables.models import MODELS

from tests.conftest import TINY_NET as TINY

pytestmark = pytest.mark.usefixtures("one_thread")
VIEWS = {"augment": "speed,warp,shift,eq", "aug_speed": 0.2, "aug_warp": 0.15, "aug_shift": 0.15, "aug_eq": 0.3}


def _batch(b=6, seed=0):
    preset = get_preset("mfcc")
    g = torch.Generator().manual_seed(seed)
    f, t = preset.shape
    x = torch.rand(b, f, t, generator=g)
    x = (x - x.mean(2, keepdim=True)) * 4
    return preset, x, torch.ones(b, t)


def _model(name, f, t):
    torch.manual_seed(0)
    m = MODELS[name](f, t, n_clusters=3, d_z=2, bounded=False, likelihood="gaussian_learned_freq", **TINY)
    if name == "uvac":
        m.prior_fitted.fill_(True)
    return m.eval()


def test_shared_views_transform_every_clip_alike_and_change_it():
    preset, x, mask = _batch()
    views = augmenter_for(VIEWS, preset)
    twins = torch.stack([x[0], x[1], x[0]])  # clip 0 twice, in two places of the batch
    torch.manual_seed(5)
    out, _ = views(twins, mask[:3], shared=True)
    assert torch.allclose(out[0], out[2])  # one draw for the batch: the same view of the same clip
    assert not torch.allclose(out, twins)  # and a view it is
    torch.manual_seed(5)
    alone, _ = views(x[:1], mask[:1], shared=True)
    assert torch.allclose(alone[0], out[0], atol=1e-6)  # whatever batch the clip is in
    torch.manual_seed(5)
    per_clip, _ = views(twins, mask[:3])
    assert not torch.allclose(per_clip[0], per_clip[2])  # training views: a draw per clip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_views_average_the_probabilities_of_the_clip_and_its_views(name):
    preset, x, mask = _batch()
    f, t = preset.shape
    m, views = _model(name, f, t), augmenter_for(VIEWS, preset)
    plain = infer_with_views(m, x, mask)
    assert torch.equal(plain["probs"], m.infer(x, mask)["probs"])  # 0 views: the clip alone
    state = torch.get_rng_state()
    out = infer_with_views(m, x, mask, views, n_views=2, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the training's random stream is left as it was
    expected = [m.infer(x, mask)["probs"]]
    for v in range(2):
        torch.manual_seed(7 + v)
        expected.append(m.infer(*views(x, mask, shared=True))["probs"])
    assert torch.allclose(out["probs"], torch.stack(expected).mean(0), atol=1e-6)
    assert not torch.allclose(out["probs"], plain["probs"])  # the views moved the probabilities
    assert torch.allclose(out["probs"].sum(1), torch.ones(len(x)), atol=1e-5)
    for rep in m.representations:  # the representations stay the clip's own
        assert torch.equal(out[rep], plain[rep])
    part = infer_with_views(m, x[2:4], mask[2:4], views, n_views=2, seed=7)
    assert torch.allclose(part["probs"], out["probs"][2:4], atol=1e-5)  # a function of the clip, not its batch
    with pytest.raises(ValueError, match="augmenter"):
        infer_with_views(m, x, mask, None, n_views=2)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_config_refuses_test_time_views_without_views(name):
    with pytest.raises(ConfigError, match="tta_views .* augment is none"):
        resolve_config({"model": name, "tta_views": 4})
    with pytest.raises(ConfigError, match="tta_views"):
        resolve_config({"model": name, "tta_views": -1, "augment": "shift"})
    assert resolve_config({"model": name, "tta_views": 4, "augment": "shift"})["tta_views"] == 4
    assert resolve_config({"model": name})["tta_views"] == 0  # off unless asked for


def test_training_is_the_same_with_and_without_test_time_views(tiny_table, tiny_config):
    base = dict(model="cat_uvac", recipe="paper", augment="shift,warp", consistency="skl", consistency_weight=1.0,
                epochs=2, seed=3)
    plain = train(tiny_config(**base), tiny_table)
    tta = train(tiny_config(**base, tta_views=3), tiny_table)
    assert [h["train/loss"] for h in plain.history] == [h["train/loss"] for h in tta.history]
    assert plain.status == tta.status
    assert 0.0 <= tta.metrics["test/acc"] <= 1.0
    assert plain.assignments["probabilities"] != tta.assignments["probabilities"]  # the averaged ones are reported
