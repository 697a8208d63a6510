"""Training throughput: ``trainables.loop.train`` vs a naive reference loop, same run, same model.

    .venv/bin/python -m benchmarks.train_bench [--device cpu|cuda] [--smoke-test] [--model cat_uvac|uvac]

The reference is the loop one would write first: fp32, a ``torch.utils.data.DataLoader`` over
CPU tensors (shuffle, batch 64), each batch cast to float32 and copied to the device, the same
network and the same loss, ``loss.item()`` every step. ``loop.train`` keeps the data on the
device, indexes batches there, and (``--precision bf16``, CUDA only) uses bf16 autocast.

Throughput = training samples per second of one epoch (the loop's validation pass excluded),
best of ``--epochs`` epochs. Data: random spectrograms in [0, 1] of the preset's shape (the
throughput does not depend on the values), full paper-sized network unless ``--smoke-test``.
Prints a table with both figures, their ratio and the device name.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from trainables.status import TrialStatus


def synthetic_table(n: int, n_freq: int, n_frames: int, n_classes: int = 10, seed: int = 0):
    """A FeatureTable of random spectrograms (80/10/10 split), built in memory."""
    from features.frontend import get_preset
    from features.table import FeatureTable

    g = torch.Generator().manual_seed(seed)
    spec = torch.rand(n, n_freq, n_frames, generator=g).to(torch.float16)
    mask = torch.ones(n, n_frames)
    stats = torch.tensor([[0.0, 1.0, -2.0, 2.0]]).repeat(n, 1)
    labels = np.array([f"c{i % n_classes}" for i in range(n)])
    split = np.array(["train"] * n, dtype=object)
    split[int(0.8 * n):int(0.9 * n)] = "val"
    split[int(0.9 * n):] = "test"
    preset = get_preset("compact")
    return FeatureTable(
        ids=np.array([f"clip{i:06d}" for i in range(n)]), spectrogram=spec, mask=mask, norm_stats=stats,
        labels=labels, label_index=torch.tensor([i % n_classes for i in range(n)]),
        classes=[f"c{i}" for i in range(n_classes)], groups=np.array(["g"] * n), split=split.astype(str),
        preset=preset, cache_key="bench",
    )


def reference_throughput(cfg: dict, table, device: torch.device, epochs: int) -> float:
    """The naive loop: DataLoader over CPU tensors, fp32, per-batch host->device copy."""
    from torch.utils.data import DataLoader, TensorDataset

    from trainables.models import Batch, build_model

    torch.manual_seed(0)
    tr = table.select("train")
    ds = TensorDataset(tr.spectrogram, tr.mask, tr.norm_stats)
    dl = DataLoader(ds, batch_size=int(cfg["batch_size"]), shuffle=True, drop_last=True)
    model = build_model(cfg, *table.shape, preset=table.preset).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr_start"]))
    best = 0.0
    for epoch in range(epochs):
        model.train()
        n = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for step, (x, m, s) in enumerate(dl):
            x, m, s = x.float().to(device), m.to(device), s.to(device)
            total, _terms = model.training_step(Batch(x, m, s), epoch + step / max(1, len(dl)))
            opt.zero_grad()
            total.backward()
            opt.step()
            total.item()
            n += x.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def loop_throughput(cfg: dict, table, epochs: int) -> float:
    from trainables.loop import train

    res = train({**cfg, "epochs": epochs}, table)
    if res.status != TrialStatus.COMPLETE:
        raise RuntimeError(f"benchmark run ended {res.status}: {res.reason}")
    return max(h["train/samples_per_s"] for h in res.history)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run(device: str, smoke: bool, model: str, epochs: int, precision: str) -> dict:
    dev = torch.device(device)
    if smoke:
        n, shape, arch = 320, (64, 32), {"channels": "8,16,16,32", "gru_hidden": 32}
    else:
        n, shape, arch = 3200, (128, 99), {"channels": "16,32,64,128", "gru_hidden": 128}
    table = synthetic_table(n, *shape)
    from trainables.config import resolve_config

    cfg = resolve_config({"model": model, "device": device, "batch_size": 64, "n_clusters": 10,
                          "silhouette_sample": 500, "precision": precision, **arch})
    ref = reference_throughput(cfg, table, dev, epochs)
    ours = loop_throughput(cfg, table, epochs)
    return {"device": device_name(dev), "model": model, "shape": shape, "n_train": int(0.8 * n),
            "precision": precision if dev.type == "cuda" else "fp32", "reference": ref, "loop": ours,
            "ratio": ours / ref}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cpu, and cuda too when present")
    p.add_argument("--smoke-test", action="store_true", help="small data and network (CPU-friendly)")
    p.add_argument("--model", choices=["cat_uvac", "uvac"], default="cat_uvac")
    p.add_argument("--epochs", type=int, default=3, help="epochs per contender (best epoch counts)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="loop precision on CUDA")
    a = p.parse_args(argv)
    devices = [a.device] if a.device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for d in devices:
        if d == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available")
        rows.append(run(d, a.smoke_test or d == "cpu" and not a.device, a.model, a.epochs, a.precision))
    print(f"{'device':<40} {'model':<9} {'input':<8} {'prec':<5} {'reference/s':>12} {'loop/s':>10} {'ratio':>6}")
    for r in rows:
        shape = f"{r['shape'][0]}x{r['shape'][1]}"
        print(f"{r['device'][:40]:<40} {r['model']:<9} {shape:<8} {r['precision']:<5} "
              f"{r['reference']:>12.1f} {r['loop']:>10.1f} {r['ratio']:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
