"""CLI: cluster new audio with a trained run (the hearing-aid use case).

    python -m trainables.predict --run RUN_DIR --audio FILE_OR_DIR [--out clusters.csv]

Loads RUN_DIR/config.json (config + the run's front-end preset) and RUN_DIR/checkpoint, decodes
every audio file with :func:`features.audio.load_audio` and featurises it with the run's own
front end (:func:`features.frontend.compute_features`), rounds the spectrogram through float16
exactly like the feature cache stores it, and runs only the inference part of the network
(UVAC: encoder + GMM prior, p(c|z); categorical UVAC: encoder h, softmax of its logits), averaged
over the run's test-time views where it was evaluated with them (``tta_views``).

Output, one CSV row per file (stdout, and ``--out`` when given)::

    path,status,cluster,confidence,probabilities,reason

``status`` is ``ok`` or ``rejected`` (a file that cannot be decoded is reported with its reason;
the others are still predicted). A summary on stderr gives the number of parameters of the
inference part against the whole model (paper: about 1.3M of 2M for UVAC).
Exit status: 0 when at least one file was predicted, 1 when none was, 2 for a bad run dir.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from trainables.evaluation import infer_with_views

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au")

__all__ = ["Predictor", "Prediction", "load_run", "inference_parameters", "list_audio", "main"]


@dataclass
class Prediction:
    path: str
    status: str  # "ok" | "rejected"
    cluster: int = -1
    probabilities: tuple[float, ...] = ()
    reason: str = ""

    @property
    def confidence(self) -> float:
        return max(self.probabilities) if self.probabilities else float("nan")


def inference_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(parameters of the inference part, all parameters). The inference part is what
    ``model.infer`` uses: UVAC encoder + latent layer + GMM prior; categorical UVAC encoders and
    heads (no decoder). Models report it with ``inference_parameters()``."""
    total = sum(p.numel() for p in model.parameters())
    return int(model.inference_parameters()), int(total)


def load_run(run_dir: str | Path, device: str = "cpu"):
    """(model in eval mode, resolved config, preset, the saved voice model as a dict or None) of a run
    directory written by trainables.train (the voice model: runs on a ``voice`` front end)."""
    from features.frontend import Preset

    from trainables.checkpoint import load_checkpoint
    from trainables.config import DEFAULTS
    from trainables.models import build_model, model_class

    run = Path(run_dir)
    cfg_path = run / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run} is not a run directory: no config.json")
    meta = json.loads(cfg_path.read_text())
    if model_class(str(meta.get("model"))) is None:
        raise ValueError(f"run {run} is a {meta.get('model')!r} baseline: there is no network to predict with")
    if "preset" not in meta:
        raise ValueError(f"{cfg_path} has no 'preset': cannot rebuild the run's front end")
    preset = Preset.from_dict(meta["preset"])
    state = load_checkpoint(run / "checkpoint", map_location="cpu")
    cfg = {k: v for k, v in state["config"].items() if k in DEFAULTS}
    n_freq = int(state.get("meta", {}).get("n_freq", preset.shape[0]))
    n_frames = int(state.get("meta", {}).get("n_frames", preset.shape[1]))
    # the preset decides whether inputs are standardised (real-valued front ends) and the style
    # factor exists: a network built without it ignores the learned input statistics
    if "maps" in state["model"]:  # the voting ensemble of restarts (trainables.restarts)
        from trainables.restarts import load_ensemble

        model = load_ensemble(state["model"], lambda: build_model(cfg, n_freq, n_frames, preset=preset))
    else:
        model = build_model(cfg, n_freq, n_frames, preset=preset)
        model.load_state_dict(state["model"])
    model.to(device).eval()
    return model, cfg, preset, meta.get("voice_model")


def list_audio(target: str | Path) -> list[Path]:
    p = Path(target)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
    return [p]


class Predictor:
    """Featurise + infer, reusable from Python: ``Predictor(run_dir).predict(paths)``."""

    def __init__(self, run_dir: str | Path, device: str = "cpu", batch_size: int = 64):
        self.model, self.cfg, self.preset, saved = load_run(run_dir, device)
        self.voices = None  # a run on a front end normalised per inferred speaker: its voices
        if self.preset.normalisation == "voice":
            from features.voice import VoiceModel

            if not saved:
                raise ValueError(f"run {run_dir} was trained on preset {self.preset.name!r}, normalised per inferred "
                                 f"speaker, but its config.json has no 'voice_model' (a run of an older release): "
                                 f"train it again to cluster new audio")
            self.voices = VoiceModel.from_dict(saved)
        elif self.preset.per_speaker:
            raise ValueError(f"run {run_dir} was trained on preset {self.preset.name!r}, normalised per speaker with "
                             f"the speaker ids: a new clip's speaker is unknown to predict; train on a preset with "
                             f"normalisation 'voice' (e.g. awe_voice), 'band' or 'clip' to cluster new audio")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        from trainables.augment import augmenter_for

        # a run evaluated with test-time views (tta_views) predicts new clips with them too
        self.views = augmenter_for(self.cfg, self.preset) if int(self.cfg.get("tta_views", 0)) > 0 else None

    def featurise(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        from features.audio import load_audio
        from features.frontend import compute_features

        clip = load_audio(path, self.preset.sample_rate, self.preset.duration_s)
        wav = torch.as_tensor(np.asarray(clip.waveform), dtype=torch.float32)
        sr = getattr(clip, "sample_rate", None)
        feats = compute_features(wav, self.preset, sample_rate=sr)
        spec = feats.spectrogram.to(torch.float16)  # as the cache stores it
        if self.voices is not None:  # normalised as the voice it is assigned to, as the loader does
            voice = self.voices.assign(feats.voice[None])
            spec = self.voices.normalise(spec[None].float(), feats.mask[None], voice)[0].to(torch.float16)
        # the frame mask matters to pool="mean"
        return spec.float(), feats.mask.float()

    @torch.no_grad()
    def predict(self, paths: Sequence[str | Path]) -> list[Prediction]:
        results: list[Prediction | None] = [None] * len(paths)
        ok_idx, specs = [], []
        for i, path in enumerate(paths):
            if not Path(path).exists():
                results[i] = Prediction(str(path), "rejected", reason="no such file")
                continue
            try:
                specs.append(self.featurise(Path(path)))
                ok_idx.append(i)
            except Exception as e:  # AudioRejected, unreadable, wrong format: report and go on
                reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
                results[i] = Prediction(str(path), "rejected", reason=str(reason))
        for start in range(0, len(ok_idx), self.batch_size):
            chunk = ok_idx[start:start + self.batch_size]
            chunk_specs = specs[start:start + self.batch_size]
            x = torch.stack([sp for sp, _ in chunk_specs]).to(self.device)
            mask = torch.stack([m for _, m in chunk_specs]).to(self.device)
            probs = infer_with_views(self.model, x, mask, self.views, int(self.cfg.get("tta_views", 0)),
                                     int(self.cfg.get("seed", 0)))["probs"]
            probs = probs.float().cpu().numpy()
            for j, i in enumerate(chunk):
                p = probs[j]
                results[i] = Prediction(str(paths[i]), "ok", int(p.argmax()), tuple(float(v) for v in p))
        return [r for r in results if r is not None]


def _csv_text(preds: list[Prediction]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "status", "cluster", "confidence", "probabilities", "reason"])
    for r in preds:
        w.writerow([
            r.path, r.status, r.cluster if r.status == "ok" else "",
            f"{r.confidence:.4f}" if r.status == "ok" else "",
            json.dumps([round(v, 6) for v in r.probabilities]) if r.status == "ok" else "",
            r.reason,
        ])
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainables.predict", description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="run directory written by python -m trainables.train")
    p.add_argument("--audio", required=True, help="an audio file or a directory (searched recursively)")
    p.add_argument("--out", help="also write the CSV here")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    try:
        pred = Predictor(a.run, device=a.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = list_audio(a.audio)
    if not paths:
        print(f"error: no audio files under {a.audio}", file=sys.stderr)
        return 1
    preds = pred.predict(paths)
    text = _csv_text(preds)
    sys.stdout.write(text)
    if a.out:
        Path(a.out).write_text(text)
    used, total = inference_parameters(pred.model)
    n_ok = sum(r.status == "ok" for r in preds)
    print(f"predicted {n_ok} of {len(preds)} file(s); {len(preds) - n_ok} rejected", file=sys.stderr)
    print(f"inference part: {used:,} of {total:,} parameters ({100.0 * used / max(1, total):.1f}%)",
          file=sys.stderr)
    return 0 if n_ok else 1


if __name__ == "__main__":
    from features.cli import run_main

    sys.exit(run_main(main))
