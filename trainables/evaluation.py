"""Evaluation of a network on one split: its predictions (:func:`predict_table`) and the clustering
metrics of a split (:func:`evaluate`), as the training loop reports them (``val/*``, ``test/*``).

Test-time augmentation (config ``tta_views`` N > 0, :func:`infer_with_views`): a clip's cluster
probabilities are their mean over the clip and N augmented views of it, made by the training views'
augmenter (trainables.augment), each view one draw of the ops' parameters shared by every clip and
seeded by the run's seed and the view's number: a clip's views are the same at every evaluation, in
any batch and in ``trainables.predict``, so its probabilities are a function of the clip alone, and
the training's random stream is left as it was. The representations (``z``, ``y``) stay the clip's
own; only the probabilities, and so the clusters, are averaged."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from trainables.split_data import SplitData

__all__ = ["EVAL_BATCH", "predict_table", "evaluate", "infer_with_views", "to_float"]

EVAL_BATCH = 256


def to_float(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().cpu()) if v.numel() == 1 else v
    if isinstance(v, np.generic):
        return v.item()
    return v



@torch.no_grad()
def infer_with_views(model, x: torch.Tensor, mask: torch.Tensor, views=None, n_views: int = 0,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """``model.infer(x [B, F, T], mask [B, T])``, its ``probs`` [B, K] replaced by their mean over the
    clip and ``n_views`` views ``views(x, mask, shared=True)`` (an :class:`~trainables.augment.Augmenter`;
    view v drawn from torch's generator seeded with ``seed`` + v inside :func:`torch.random.fork_rng`, the
    global stream restored afterwards)."""
    out = model.infer(x, mask)
    if n_views <= 0:
        return out
    if views is None:
        raise ValueError(f"tta_views {n_views} needs the training views' augmenter (augment is none)")
    probs = out["probs"].float()
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    for v in range(int(n_views)):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed) + v)
            x_view, mask_view = views(x, mask, shared=True)
        probs = probs + model.infer(x_view, mask_view)["probs"].float()
    return {**out, "probs": probs / (int(n_views) + 1)}


@torch.no_grad()
def predict_table(model, data: SplitData, cfg: Mapping[str, Any], views=None) -> dict[str, np.ndarray]:
    """Inference over one split: cluster [N], probabilities [N, K] and each of the model's
    representations (``z`` latent mean [N, d_z]; ``y`` categorical posterior [N, K]; an empty
    split: the widths the model declares, :meth:`ClusteringModel.representation_sizes`).
    ``views``: the run's augmenter, used when ``cfg["tta_views"]`` > 0 (:func:`infer_with_views`,
    seeded with ``cfg["seed"]``)."""
    was_training = model.training
    model.eval()
    n_views = int(cfg.get("tta_views", 0))
    outs: dict[str, list[torch.Tensor]] = {"probs": [], **{r: [] for r in model.representations}}
    for b in data.in_order(EVAL_BATCH):
        inf = infer_with_views(model, b.x, b.mask, views, n_views, int(cfg.get("seed", 0)))
        for key in outs:
            outs[key].append(inf[key].float().cpu())
    model.train(was_training)
    if data.n == 0:
        dims = {"probs": int(cfg["n_clusters"]), **model.representation_sizes()}
        empty = {key: np.zeros((0, dims[key]), np.float32) for key in outs}
        return {"cluster": np.zeros(0, dtype=np.int64), **empty}
    pred = {key: torch.cat(v).numpy() for key, v in outs.items()}
    pred["cluster"] = pred["probs"].argmax(axis=1).astype(np.int64)
    return pred


def evaluate(model, data: SplitData, labels: np.ndarray, cfg, prefix: str, views=None) -> tuple[dict[str, Any], dict]:
    """The clustering metrics of ``model`` on one split (names ``prefix`` + metric) and its predictions
    (:func:`predict_table`, ``views`` as there)."""
    from trainables.metrics import clustering_metrics

    pred = predict_table(model, data, cfg, views)
    if data.n == 0:
        return {}, pred
    reps = {r: pred[r] for r in model.representations}
    # A non-finite representation cannot be scored (scikit-learn raises): NaN metrics instead.
    broken = [name for name, r in reps.items() if not np.isfinite(r).all()]
    for name in broken:
        reps.pop(name)
    m = clustering_metrics(
        labels,
        pred["cluster"],
        representations=reps,
        prefix=prefix,
        n_clusters=int(cfg["n_clusters"]),
        sample_size=int(cfg["silhouette_sample"]) or None,
        seed=int(cfg["seed"]),
    )
    m = {k: to_float(v) for k, v in m.items()}
    for name in broken:
        for q in ("silhouette", "dbi", "chi"):
            m[f"{prefix}{q}_{name}"] = float("nan")
    return m, pred
