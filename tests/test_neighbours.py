"""Neighbour views (trainables.neighbours) are honoured: the neighbours are the nearest other
clips, the view is one of them (augmented when augment is set), the consistency term reads it,
and configs that would ignore it are refused."""
from __future__ import annotations

import pytest
import torch

from trainables.config import ConfigError
from trainables.loop import train
from trainables.neighbours import NeighbourViews, nearest_neighbours, neighbour_space
from trainables.run import setup_run, views

pytestmark = pytest.mark.usefixtures("one_thread")


def _two_groups(n_per: int = 10, seed: int = 0) -> torch.Tensor:
    """Clips [2 n_per, 3, 4]: two tight groups far apart, each along its own direction."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(2, 12, generator=g) * 5
    x = torch.cat([base[i] + 0.05 * torch.randn(n_per, 12, generator=g) for i in range(2)])
    return x.reshape(2 * n_per, 3, 4)


def test_neighbours_are_the_nearest_other_clips_of_a_known_case():
    # six points on a circle in the plane (as [N, 2, 1] "clips"): each one's nearest two are its
    # neighbours on the circle, by cosine similarity after standardising
    angles = torch.arange(6) * (2 * torch.pi / 6)
    x = torch.stack([angles.cos(), angles.sin()], 1)[:, :, None]
    idx = nearest_neighbours(x, 2)
    assert idx.shape == (6, 2) and idx.dtype == torch.int64
    for i in range(6):
        assert set(idx[i].tolist()) == {(i - 1) % 6, (i + 1) % 6}


def test_neighbours_stay_inside_their_group_and_never_are_the_clip_itself():
    x = _two_groups()
    idx = nearest_neighbours(x, 5)
    rows = torch.arange(20)[:, None]
    assert not torch.any(idx == rows)
    assert torch.all((idx < 10) == (rows < 10))
    z = neighbour_space(x)
    assert z.shape[1] == min(20, 12) and torch.allclose(z.norm(dim=1), torch.ones(20), atol=1e-5)


@pytest.mark.parametrize("k", [0, 20, -1])
def test_a_k_the_clips_cannot_give_is_refused(k):
    with pytest.raises(ValueError, match="neighbours: k must be between 1 and"):
        nearest_neighbours(_two_groups(), k)


def test_draws_come_from_the_neighbour_sets_and_repeat_with_the_generator():
    nv = NeighbourViews(_two_groups(), 3)
    idx = torch.arange(20).repeat(10)
    a = nv.draw(idx, torch.Generator().manual_seed(4))
    b = nv.draw(idx, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert all(int(j) in set(nv.index[int(i)].tolist()) for i, j in zip(idx, a))
    assert len(set(zip(idx.tolist(), a.tolist()))) > 20  # more than one neighbour is drawn per clip


@pytest.mark.parametrize("augment", ["none", "shift"])
def test_the_view_is_a_neighbour_augmented_when_asked(tiny_table, tiny_config, augment):
    cfg = tiny_config(model="cat_uvac", neighbours=4, consistency="mi", augment=augment, aug_shift=0.3,
                      n_clusters=tiny_table.n_classes)
    run = setup_run(cfg, tiny_table, torch.device("cpu"), False, None)
    idx = torch.arange(8)
    gen_state = run.shuffle_gen.get_state()
    batch = views(run, run.train_data, idx)
    run.shuffle_gen.set_state(gen_state)
    drawn = run.neighbours.draw(idx, run.shuffle_gen)
    other = run.train_data.batch(drawn)
    assert batch.view is not None and batch.view.x.shape == batch.x.shape
    assert not torch.equal(batch.view.x, batch.x)
    if augment == "none":
        assert torch.equal(batch.view.x, other.x) and torch.equal(batch.view.mask, other.mask)
    else:
        assert not torch.equal(batch.view.x, other.x)
        assert float((batch.view.x - other.x).abs().mean()) < float((batch.view.x - batch.x).abs().mean())


@pytest.mark.parametrize("model", ["uvac", "cat_uvac"])
def test_a_run_with_neighbours_trains_on_the_consistency_term(tiny_table, tiny_config, model):
    extra = {"prior_warmup_epochs": 1} if model == "uvac" else {}
    res = train(tiny_config(model=model, epochs=2, neighbours=3, consistency="mi", augment="none", **extra),
                tiny_table)
    assert res.status == "complete"
    assert res.history[-1]["train/consistency"] > 0


def test_configs_that_would_ignore_the_neighbours_or_lack_a_view_are_refused(tiny_config):
    with pytest.raises(ConfigError, match="neighbours: the neighbour view is read by the consistency term"):
        tiny_config(model="cat_uvac", neighbours=5, consistency="none")
    with pytest.raises(ConfigError, match="set augment .* or neighbours"):
        tiny_config(model="cat_uvac", neighbours=0, consistency="mi", augment="none")
    assert tiny_config(model="uvac", neighbours=5, consistency="skl", augment="none")["neighbours"] == 5
