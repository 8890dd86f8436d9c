"""One training run: samples -> folds -> ``FoldTrainer`` per fold -> ``results.json`` + plots.

Layout of ``output_dir``:

    train_config.yaml        the resolved config
    results.json             per-fold validation metrics at the best epoch, mean and std, world size
    best/                    (single split) self-contained checkpoint for EmotionRecognizer + its card
    fold_<k>/best/           (cross-validation) one per fold
    [fold_<k>/]checkpoints/  training state for --resume
    [fold_<k>/]curves.png, confusion.png; confusion.png (summed over folds)
    feature_cache/           frozen-encoder outputs (unless data.cache_dir is set)
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from gia_mic.configuration import ConfigError
from gia_mic.plots import plot_confusion, plot_training_curves, save_figure
from gia_mic.utils import atomic_write_text
from train.cache import FeatureCache
from train.config import TrainConfig
from train.data import Fold, Sample, make_folds, read_manifest, synthetic_samples
from train.distributed import make_accelerator, per_process_batch
from train.loop import FoldTrainer

logger = logging.getLogger(__name__)

RESULT_NAME = "fold_result.json"
IGNORED_ON_RESUME = ("stop_after_epochs", "progress", "optim.max_epochs", "optim.patience")
"""Keys a resumed run may change: it can be stopped early, or extended / shortened."""


def _finished(result: dict[str, Any], cfg: TrainConfig) -> bool:
    """Whether a fold's stored result still stands (not extended by a larger max_epochs on resume)."""
    epochs, best, patience = result.get("epochs", 0), result.get("best_epoch", 0), cfg.optim.patience
    return epochs >= cfg.optim.max_epochs or (patience > 0 and epochs - best >= patience)


def load_samples(cfg: TrainConfig) -> tuple[list[Sample], Counter]:
    """The corpus named by ``cfg.data``, labels mapped, rows without usable modality dropped."""
    d, labels = cfg.data, cfg.model.labels
    if d.source == "synthetic":
        samples, dropped = synthetic_samples(count=d.synthetic_samples, speakers=d.synthetic_speakers,
                                             labels=labels, seed=cfg.seed), Counter()
    elif d.source == "manifest":
        samples, dropped = read_manifest(d.manifest, labels=labels, label_map=d.label_map, root=d.root)
    else:
        from train.iemocap import read_iemocap

        samples, dropped = read_iemocap(d.root, labels=labels, label_map=d.label_map, sessions=d.iemocap_sessions,
                                        speaker_side=d.iemocap_speaker_side)
    used = set(cfg.model.modalities)
    usable = [s for s in samples if s.synthetic_seed is not None
              or ("video" in used and s.video) or ("audio" in used and s.audio) or ("text" in used and s.text)]
    if len(usable) < len(samples):
        dropped["<no usable modality>"] += len(samples) - len(usable)
    return usable, dropped


def selection_split(fold: Fold, fraction: float, seed: int) -> tuple[Fold, list[Sample]]:
    """A cross-validation fold as three roles: ``(Fold(train, selection), test)``.

    The held-out fold becomes the test set; ``fraction`` of the training folds' speakers (seeded,
    at least one, never all) are held out of training to choose the epoch. No test speaker
    chooses anything, and the selection speakers are not trained on.
    """
    speakers = sorted({s.speaker for s in fold.train})
    if len(speakers) < 2:
        raise ConfigError(f"fold {fold.name}: the training folds have {len(speakers)} speaker(s); holding one out "
                          "for selection needs at least 2")
    random.Random(f"{seed}-{fold.name}").shuffle(speakers)
    chosen = set(speakers[: min(len(speakers) - 1, max(1, round(len(speakers) * fraction)))])
    inner = Fold(fold.name, [s for s in fold.train if s.speaker not in chosen], [s for s in fold.train if s.speaker in chosen])
    return inner, fold.val


def fold_dir(output_dir: Path, fold: Fold, n_folds: int) -> Path:
    """``output_dir`` for a single split, ``output_dir/fold_<name>`` for cross-validation."""
    return output_dir if n_folds == 1 and fold.name == "0" else output_dir / f"fold_{fold.name}"


def _check_output_dir(cfg: TrainConfig, output_dir: Path, resume: bool) -> None:
    saved = output_dir / "train_config.yaml"
    if not saved.exists():
        return
    if not resume:
        raise ConfigError(f"{output_dir} already holds a run: pass --resume to continue it, or choose a new --output-dir")
    old, new = TrainConfig.load(saved).to_dict(), cfg.to_dict()
    changed = [k for k in _flatten(new) if k not in IGNORED_ON_RESUME and k.split(".")[0] not in IGNORED_ON_RESUME
               and _flatten(new).get(k) != _flatten(old).get(k)]
    if changed:
        raise ConfigError(f"--resume: the config differs from the run in {output_dir} at {', '.join(changed[:6])}")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and k != "encoder_configs":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def summarize(folds: list[dict[str, Any]], labels: list[str], dropped: Counter | None = None, *,
              world_size: int = 1, per_process_batch_size: int | None = None) -> dict[str, Any]:
    """``results.json``: per-fold metrics, their mean and (population) standard deviation.

    In cross-validation each fold's ``wa`` / ``ua`` / ``macro_f1`` are its *selection* figures (the
    speakers that chose the epoch) and ``test`` holds the held-out fold's figures at that epoch;
    ``test_mean`` / ``test_std`` summarise those, the only ones to report as results.

    ``world_size``: the processes that trained, each on ``per_process_batch_size`` samples of
    every global batch (``optim.batch_size``).
    """
    keys = ("wa", "ua", "macro_f1")
    values = {k: np.array([f[k] for f in folds], dtype=np.float64) for k in keys}
    tests = [f["test"] for f in folds if f.get("test")]
    test_values = {k: np.array([t[k] for t in tests], dtype=np.float64) for k in keys} if tests else {}
    return {
        **({"split": "selection"} if tests else {}),  # the folds' own figures chose the epoch
        **({"test_mean": {k: float(v.mean()) for k, v in test_values.items()},
            "test_std": {k: float(v.std()) for k, v in test_values.items()}} if tests else {}),
        "folds": [{k: v for k, v in f.items() if k != "history"} for f in folds],
        "mean": {k: float(values[k].mean()) for k in keys},
        "std": {k: float(values[k].std()) for k in keys},
        "labels": list(labels),
        "dropped": dict(dropped or {}),
        "world_size": world_size,
        **({"per_process_batch_size": per_process_batch_size} if per_process_batch_size else {}),
    }


def _plots(result: dict[str, Any], labels: list[str], out: Path, title: str) -> None:
    save_figure(plot_training_curves(result["history"], title=title), out / "curves.png")
    save_figure(plot_confusion(result["confusion"], labels, title=f"{title}: validation"), out / "confusion.png")


def run_training(cfg: TrainConfig, output_dir: str | Path, *, resume: bool = False,
                 features: dict | None = None, feature_memo: dict | None = None) -> dict[str, Any]:
    """Trains every fold (skipping finished ones on resume) and writes ``results.json``.

    ``features`` (sample id -> modality -> ``(L, E)``) replaces the frozen-encoder pass.
    ``feature_memo``: a dict shared by runs with the same frozen encoders (ablation variants):
    a fold whose samples are all in it skips the encoder pass (and the decoding of every clip);
    otherwise the fold's features are added to it.

    Raises:
        train.loop.TrainingInterrupted: ``stop_after_epochs`` was reached.
        ConfigError: bad config, data or output folder.
    """
    output_dir = Path(output_dir)
    accelerator = make_accelerator(cfg.mixed_precision)
    world = accelerator.num_processes
    share = per_process_batch(cfg.optim.batch_size, world)
    _check_output_dir(cfg, output_dir, resume)
    samples, dropped = load_samples(cfg)
    folds = make_folds(samples, val_fraction=cfg.data.val_fraction, num_folds=cfg.data.num_folds, seed=cfg.seed,
                       only=cfg.data.folds)
    cross_validation = len(folds) > 1 or any(s.fold is not None for s in samples)
    accelerator.wait_for_everyone()  # every rank has checked the folder before rank 0 writes into it
    if accelerator.is_main_process:  # only once the data are known to be readable
        cfg.save(output_dir / "train_config.yaml")
    cache = FeatureCache(cfg.data.cache_dir or output_dir / "feature_cache", read_only=not accelerator.is_main_process)
    labels = cfg.model.labels
    results = []
    for fold in folds:
        out = fold_dir(output_dir, fold, len(folds))
        done = out / RESULT_NAME
        if resume and done.is_file():
            previous = json.loads(done.read_text(encoding="utf-8"))
            if _finished(previous, cfg):
                results.append(previous)
                continue
        trained, test = fold, None
        if cross_validation:  # the held-out fold is the test fold; the epoch is chosen inside the training folds
            trained, test = selection_split(fold, cfg.data.selection_fraction, cfg.seed)
        result = FoldTrainer(cfg, trained, out, accelerator, cache, features, memo=feature_memo,
                             test=test).fit(resume=resume)
        if accelerator.is_main_process:
            atomic_write_text(done, json.dumps(result, indent=1) + "\n")
            _plots(result, labels, out, f"fold {fold.name}" if len(folds) > 1 else "validation")
        results.append(result)
    summary = summarize(results, labels, dropped, world_size=world, per_process_batch_size=share)
    if accelerator.is_main_process:
        atomic_write_text(output_dir / "results.json", json.dumps(summary, indent=2) + "\n")
        if len(folds) > 1:
            total = np.sum([r["confusion"] for r in results], axis=0)
            save_figure(plot_confusion(total, labels, title=f"all {len(folds)} folds"), output_dir / "confusion.png")
    accelerator.wait_for_everyone()
    return summary
