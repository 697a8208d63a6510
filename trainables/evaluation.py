"""Evaluation of a network on one split: its predictions (:func:`predict_table`) and the clustering
metrics of a split (:func:`evaluate`), as the training loop reports them (``val/*``, ``test/*``)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from trainables.split_data import SplitData

__all__ = ["EVAL_BATCH", "predict_table", "evaluate", "to_float"]

EVAL_BATCH = 256


def to_float(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().cpu()) if v.numel() == 1 else v
    if isinstance(v, np.generic):
        return v.item()
    return v



@torch.no_grad()
def predict_table(model, data: SplitData, cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Inference over one split: cluster [N], probabilities [N, K] and each of the model's
    representations (``z`` latent mean [N, d_z]; ``y`` categorical posterior [N, K]; an empty
    split: the widths the model declares, :meth:`ClusteringModel.representation_sizes`)."""
    was_training = model.training
    model.eval()
    outs: dict[str, list[torch.Tensor]] = {"probs": [], **{r: [] for r in model.representations}}
    for b in data.in_order(EVAL_BATCH):
        inf = model.infer(b.x, b.mask)
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


def evaluate(model, data: SplitData, labels: np.ndarray, cfg, prefix: str) -> tuple[dict[str, Any], dict]:
    from trainables.metrics import clustering_metrics

    pred = predict_table(model, data, cfg)
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
