"""The training loop of one fold: Adam, CE + gamma * L_MIR, early stopping on validation UA.

Runs unchanged on one CPU, one GPU or several processes under ``torchrun`` / ``accelerate
launch`` (DDP, ``train.distributed``): every global batch is split over the ranks, their gradients
are averaged, only rank 0 writes; ``TrainStep`` (``train.step``) is the module DDP wraps, mixed
precision and gradient scaling come from ``accelerate``. Every epoch ends with an atomic training-state
checkpoint; ``resume=True`` continues from the newest one and finishes exactly as an
uninterrupted run would (same batches, same RNG streams, same optimiser state).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object, set_seed
from safetensors.torch import save_file
from tqdm.auto import tqdm

from gia_mic.metrics import classification_report
from gia_mic.modeling import GiaMicForEmotionRecognition
from gia_mic.utils import atomic_write_text
from hub_card import render_model_card
from train.cache import FeatureCache, encoder_identity, sha256_json
from train.config import TrainConfig
from train.data import Fold, Sample
from train.features import extract_frozen
from train.state import (
    latest_checkpoint,
    load_trainable_state,
    optimizer_state,
    read_tensors,
    restore_optimizer,
    restore_rng,
    rng_state,
    save_checkpoint,
    trainable_state,
)
from train.step import TrainStep, build_batch

logger = logging.getLogger(__name__)

LOSSES = ("loss", "ce_loss", "mir_loss")


class TrainingInterrupted(RuntimeError):
    """Raised by the ``stop_after_epochs`` debug knob after a checkpoint is written."""


@dataclass
class LoopState:
    """Everything besides tensors that a resumed run needs."""

    epoch: int = 0
    best_score: float = -1.0  # the best selection score (``optim.select_metric``: UA or the corpus-mean UA)
    best_epoch: int = 0
    bad_epochs: int = 0
    done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    best_report: dict[str, Any] | None = None
    best_test_report: dict[str, Any] | None = None  # the test fold at the best epoch: reported, never used to choose


def epoch_batches(n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  groups: Sequence[object] | None = None) -> list[list[int]]:
    """This process's share of the batches of epoch ``epoch`` (a seeded permutation).

    ``batch_size`` is the global batch: every batch is the same on every rank, and rank ``r``
    takes its samples ``r, r + world, ...``, so the ranks' mean gradients average to the
    batch's (exactly when it splits evenly). A batch smaller than ``world`` (an epoch's
    or a group's last) is repeated so that every rank takes as many steps.

    With ``groups`` (one key per sample, e.g. which modalities it has), a batch only holds
    samples of one group and the batch order is shuffled: a text-only sample is then never
    padded to the length of a speech clip.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    if groups is None:
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    else:
        members: dict[object, list[int]] = {}
        for i in order:
            members.setdefault(groups[i], []).append(i)
        batches = [m[i : i + batch_size] for m in members.values() for i in range(0, len(m), batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return [b[rank::world] or [b[rank % len(b)]] for b in batches]


class FoldTrainer:
    """Trains one fold and returns its validation result at the best epoch.

    Args:
        cfg: The run's config.
        fold: Training and validation samples.
        out_dir: The fold's folder (``best/``, ``checkpoints/``).
        accelerator: From ``train.distributed.make_accelerator``.
        cache: The frozen-feature cache.
        features: Precomputed frozen features (skips extraction; benchmarks).
        memo: Frozen features shared with other runs of the same encoders (``run_training``).
        test: Test samples (cross-validation's held-out fold): scored with the weights of each
            new best epoch and reported in ``result()["test"]``; they never choose anything.
    """

    def __init__(self, cfg: TrainConfig, fold: Fold, out_dir: Path, accelerator, cache: FeatureCache,
                 features: dict | None = None, memo: dict | None = None, test: list[Sample] | None = None) -> None:
        self.cfg, self.fold, self.out, self.acc = cfg, fold, Path(out_dir), accelerator
        self.test = list(test or [])
        self.ckpt_root = self.out / "checkpoints"
        set_seed(cfg.seed)
        self.model = GiaMicForEmotionRecognition.from_config(copy.deepcopy(cfg.model)).to(accelerator.device)
        if features is None and memo is not None and all(s.id in memo for s in fold.train + fold.val + self.test):
            features = memo
        if features is None:
            features = self._extract(cache)
            if memo is not None:
                memo.update(features)
        self.features = features
        self.frozen_id = sha256_json([encoder_identity(self.model, m) for m in self.model.frozen_modalities()])
        o = cfg.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
        self.module = TrainStep(self.model)
        self.step, self.optimizer = accelerator.prepare(self.module, optimizer)
        if accelerator.num_processes > 1:  # same initial weights, but each rank its own dropout masks
            set_seed(cfg.seed, device_specific=True)
        self.params = params
        self.state = LoopState()

    def _extract(self, cache: FeatureCache) -> dict:
        kwargs = dict(batch_size=self.cfg.data.extract_batch_size, device=self.acc.device,
                      synthetic_seconds=self.cfg.data.synthetic_seconds, progress=self.cfg.progress)
        samples = self.fold.train + self.fold.val + self.test
        if not self.acc.is_main_process:  # the main process fills the cache, the others read it
            self.acc.wait_for_everyone()
        features = extract_frozen(self.model, samples, cache, progress=kwargs.pop("progress") and self.acc.is_main_process,
                                  **kwargs)
        if self.acc.is_main_process:
            self.acc.wait_for_everyone()
        return features

    # ------------------------------------------------------------------ the loop
    def fit(self, *, resume: bool = False) -> dict[str, Any]:
        """Runs epochs until ``max_epochs`` or early stopping; returns the fold result."""
        if resume:
            self._resume()
        ran = 0
        while not self.state.done:
            epoch = self.state.epoch
            stats = self._train_epoch(epoch)
            report, val_loss = self._evaluate()
            self._record(epoch, stats, report, val_loss)
            self._checkpoint()
            ran += 1
            stop = self.cfg.stop_after_epochs
            if not self.state.done and stop is not None and ran >= stop:
                raise TrainingInterrupted(f"stopped after {ran} epoch(s) (stop_after_epochs); continue with --resume")
        return self.result()

    def _modality_key(self, sample: Sample) -> tuple[bool, ...]:
        """Which modalities a sample has (cached features, or a source for the fine-tuned ones)."""
        cached = self.features.get(sample.id, {})
        sources = {"video": sample.video, "audio": sample.audio, "text": sample.text}
        return tuple(m in cached or bool(sources[m]) for m in self.cfg.model.modalities)

    def _batch(self, samples: list[Sample]):
        return build_batch(samples, self.features, self.model,
                           synthetic_seconds=self.cfg.data.synthetic_seconds).to(self.acc.device)

    def _forward(self, batch, module: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        with self.acc.autocast():
            return (module or self.step)(batch.cached, batch.inputs, batch.modality_mask, batch.labels, batch.weights)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        """Mean losses of the epoch's global batches and ``samples_per_process`` (one count per rank)."""
        o, acc = self.cfg.optim, self.acc
        groups = [self._modality_key(x) for x in self.fold.train] if o.group_by_modalities else None
        batches = epoch_batches(len(self.fold.train), o.batch_size, seed=self.cfg.seed, epoch=epoch,
                                rank=acc.process_index, world=acc.num_processes, groups=groups)
        self.step.train()
        totals: dict[str, float] = defaultdict(float)
        bar = tqdm(batches, desc=f"fold {self.fold.name} epoch {epoch + 1}", unit="batch", leave=False,
                   disable=not (self.cfg.progress and acc.is_main_process))
        self.optimizer.zero_grad()
        seen = 0
        for i, index in enumerate(bar):
            group_start = i - i % o.grad_accum_steps
            group_size = min(o.grad_accum_steps, len(batches) - group_start)
            last_in_group = i == group_start + group_size - 1
            with contextlib.nullcontext() if last_in_group else acc.no_sync(self.step):
                out = self._forward(self._batch([self.fold.train[j] for j in index]))
                acc.backward(out["loss"] / group_size)
            if last_in_group:
                if o.max_grad_norm > 0:
                    acc.clip_grad_norm_(self.params, o.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad()
            for name in LOSSES:
                totals[name] += float(out[name].detach())
            seen += len(index)
            bar.set_postfix(loss=f"{totals['loss'] / (i + 1):.4f}")
        stats = {k: totals[k] / max(len(batches), 1) for k in LOSSES}
        if acc.num_processes > 1:  # the global batches' loss: the mean over the ranks' equal shares
            means = acc.reduce(torch.tensor([stats[k] for k in LOSSES], dtype=torch.float64, device=acc.device), "mean")
            stats = dict(zip(LOSSES, means.tolist()))
        return {**stats, "samples_per_process": gather_object([seen])}

    @torch.no_grad()
    def _evaluate(self, samples: list[Sample] | None = None) -> tuple[dict[str, Any], float]:
        """Every rank scores its share of the validation set (or ``samples``); the predictions are gathered on all."""
        acc, val = self.acc, self.fold.val if samples is None else samples
        self.step.eval()
        shard = list(range(acc.process_index, len(val), acc.num_processes))
        size = self.cfg.optim.batch_size
        preds, loss_sum = [], 0.0
        for start in range(0, len(shard), size):
            index = shard[start : start + size]
            out = self._forward(self._batch([val[j] for j in index]), self.module)  # no DDP: shares may differ
            preds += list(zip(index, out["logits"].argmax(dim=-1).tolist()))
            loss_sum += float(out["ce_loss"]) * len(index)
        preds = dict(gather_object(preds))
        loss = sum(gather_object([loss_sum])) / max(len(val), 1)
        order = sorted(preds)
        y_true, y_pred = [val[j].label for j in order], [preds[j] for j in order]
        report = classification_report(y_true, y_pred, self.cfg.model.labels)
        corpora = sorted({val[j].corpus or "-" for j in order})
        if len(corpora) > 1:
            report["by_corpus"] = {
                c: classification_report([t for j, t in zip(order, y_true) if (val[j].corpus or "-") == c],
                                         [p for j, p in zip(order, y_pred) if (val[j].corpus or "-") == c],
                                         self.cfg.model.labels)
                for c in corpora}
        return report, loss

    def _score(self, report: dict[str, Any]) -> float:
        """The number that picks the best epoch (``optim.select_metric``; with one corpus, UA)."""
        if self.cfg.optim.select_metric == "corpus_mean_ua" and "by_corpus" in report:
            values = [r["ua"] for r in report["by_corpus"].values()]
            return sum(values) / len(values)
        return report["ua"]

    def _record(self, epoch: int, stats: dict[str, Any], report: dict[str, Any], val_loss: float) -> None:
        s = self.state
        s.history.append({"epoch": epoch + 1, "train_loss": stats.get("loss"), "train_ce": stats.get("ce_loss"),
                          "train_mir": stats.get("mir_loss"), "train_samples": stats.get("samples_per_process"),
                          "val_loss": val_loss, "val_wa": report["wa"], "val_ua": report["ua"],
                          "val_macro_f1": report["macro_f1"],
                          **{f"val_ua_{c}": r["ua"] for c, r in report.get("by_corpus", {}).items()}})
        score = self._score(report)
        improved = not math.isnan(score) and score > s.best_score
        s.epoch = epoch + 1
        if improved:
            s.best_score, s.best_epoch, s.best_report, s.bad_epochs = score, epoch + 1, report, 0
            if self.test:  # scored after the choice is made, so it can only be reported
                s.best_test_report = self._evaluate(self.test)[0]
            self._save_best()
        else:
            s.bad_epochs += 1
        self._update_done()
        per_corpus = "".join(f" | {c} UA {r['ua']:.4f}" for c, r in report.get("by_corpus", {}).items())
        logger.info("fold %s epoch %d: loss %.4f val UA %.4f WA %.4f%s%s", self.fold.name, s.epoch,
                    stats.get("loss", 0.0), report["ua"], report["wa"], per_corpus, " (best)" if improved else "")

    # ------------------------------------------------------------------ files
    def _save_best(self) -> None:
        if self.acc.is_main_process:
            best = self.out / "best"
            self.acc.unwrap_model(self.step).model.save_pretrained(best)
            self.cfg.save(best / "train_config.yaml")
            metrics = {"fold": self.fold.name, "epoch": self.state.best_epoch, **self.state.best_report}
            atomic_write_text(best / "metrics.json", json.dumps(metrics, indent=2) + "\n")
            atomic_write_text(best / "README.md", self._card())
        self.acc.wait_for_everyone()

    def _card(self) -> str:
        """The ``hub_card`` model card of ``best/`` (this fold's validation result so far)."""
        single = self.fold.name == "0"  # make_folds' name for a single train/val split
        result = self.result()
        results = {"folds": [result], **({"split": result["split"]} if "split" in result else {})}
        return render_model_card(self.model.config.to_dict(), self.cfg.to_dict(), results,
                                 extra={"fold": None if single else self.fold.name})

    def _checkpoint(self) -> None:
        def write_main(staging: Path) -> None:
            save_file(trainable_state(self.model), str(staging / "model.safetensors"))
            tensors, meta = optimizer_state(self.optimizer)
            save_file(tensors, str(staging / "optimizer.safetensors"))
            scaler = self.acc.scaler.state_dict() if self.acc.scaler is not None else None
            state = {**asdict(self.state), "optimizer": meta, "scaler": scaler, "frozen_encoders": self.frozen_id,
                     "world_size": self.acc.num_processes}
            atomic_write_text(staging / "state.json", json.dumps(state, indent=1) + "\n")
            self.cfg.save(staging / "train_config.yaml")

        rng = gather_object([rng_state()])  # every rank's generators, written by rank 0
        save_checkpoint(self.ckpt_root, f"epoch-{self.state.epoch:04d}", is_main=self.acc.is_main_process,
                        rng=rng, barrier=self.acc.wait_for_everyone, write_main=write_main,
                        keep=self.cfg.keep_checkpoints)

    def _resume(self) -> None:
        path = latest_checkpoint(self.ckpt_root)
        if path is None:
            logger.info("fold %s: no checkpoint to resume from; starting fresh", self.fold.name)
            return
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if state["frozen_encoders"] != self.frozen_id:
            raise RuntimeError(f"{path}: the frozen encoders differ from the ones this checkpoint was trained with")
        load_trainable_state(self.model, read_tensors(path / "model.safetensors"))
        restore_optimizer(self.optimizer, read_tensors(path / "optimizer.safetensors"), state["optimizer"])
        if state["scaler"] is not None and self.acc.scaler is not None:
            self.acc.scaler.load_state_dict(state["scaler"])
        self._restore_rng(path, state.get("world_size", 1), state["epoch"])
        if "best_ua" in state:  # state.json written before LoopState.best_ua was renamed best_score
            state["best_score"] = state.pop("best_ua")
        self.state = LoopState(**{k: state[k] for k in LoopState.__dataclass_fields__ if k in state})
        self._update_done()  # max_epochs / patience may have changed on resume
        logger.info("fold %s: resumed from %s (epoch %d)", self.fold.name, path.name, self.state.epoch)

    def _restore_rng(self, path: Path, written_by: int, epoch: int) -> None:
        """This rank's random state from the checkpoint, or a fresh seed when the world size changed."""
        rank, world = self.acc.process_index, self.acc.num_processes
        if written_by == world:
            restore_rng(read_tensors(path / f"rng-{rank}.safetensors"),
                        json.loads((path / f"rng-{rank}.json").read_text(encoding="utf-8")))
            return
        # weights, optimiser and (global) batches still continue exactly; only the dropout streams restart
        logger.warning("fold %s: %s was written by %d process(es), resuming with %d: the random streams restart "
                       "from the seed", self.fold.name, path.name, written_by, world)
        set_seed(self.cfg.seed + 7919 * epoch, device_specific=True)  # a stream per resumed epoch and rank

    def _update_done(self) -> None:
        s, patience = self.state, self.cfg.optim.patience
        s.done = s.epoch >= self.cfg.optim.max_epochs or (patience > 0 and s.bad_epochs >= patience)

    def result(self) -> dict[str, Any]:
        """The fold's entry of ``results.json``: validation (selection) metrics at the best epoch, and ``test``.

        With test samples (cross-validation), ``split`` is ``"selection"``, ``selection_speakers``
        names the speakers that chose the epoch and ``test`` holds the held-out fold's figures.
        """
        r = self.state.best_report or {}
        keys = ("wa", "ua", "macro_f1", "per_class_recall", "confusion")
        by_corpus = {c: {k: v.get(k) for k in (*keys, "n")} for c, v in r.get("by_corpus", {}).items()}
        t = self.state.best_test_report
        group = "session" if self.cfg.data.source == "iemocap" else "fold"
        test = {"test": {"split": f"test: {group} {self.fold.name}", "n": len(self.test), **{k: t.get(k) for k in keys}}
                } if self.test and t else {}
        return {"fold": self.fold.name, **{k: r.get(k) for k in keys}, **({"by_corpus": by_corpus} if by_corpus else {}),
                **test, **({"split": "selection", "n_test": len(self.test),
                            "selection_speakers": sorted({s.speaker for s in self.fold.val})} if self.test else {}),
                "select_metric": self.cfg.optim.select_metric, "epochs": self.state.epoch,
                "best_epoch": self.state.best_epoch, "n_train": len(self.fold.train), "n_val": len(self.fold.val),
                "history": self.state.history}
