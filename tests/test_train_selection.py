"""Issue 11 §5: in cross-validation the held-out fold is a test fold; the epoch is chosen inside the training folds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gia_mic.configuration import ConfigError
from train.config import TrainConfig
from train.data import Fold, Sample

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny.yaml"
CV = ["data.synthetic_samples=24", "data.synthetic_speakers=6", "data.synthetic_seconds=0.4", "data.num_folds=3",
      "optim.batch_size=4", "optim.max_epochs=2", "optim.patience=0", "progress=false"]


def sample(i: int, speaker: str) -> Sample:
    return Sample(id=f"s{i}", label=i % 4, speaker=speaker)


def test_selection_split_holds_training_speakers_out_and_keeps_the_test_fold():
    from train.run import selection_split

    train = [sample(i, f"spk{i % 8}") for i in range(32)]
    test = [sample(100 + i, "spkT") for i in range(4)]
    inner, held = selection_split(Fold("3", train, test), 0.25, seed=0)
    assert held == test and inner.name == "3"
    chosen = {s.speaker for s in inner.val}
    assert len(chosen) == 2 and not chosen & {s.speaker for s in inner.train}  # 25 % of 8 speakers, disjoint
    assert sorted(s.id for s in inner.train + inner.val) == sorted(s.id for s in train)
    assert selection_split(Fold("3", train, test), 0.25, seed=0)[0].val == inner.val  # seeded
    assert {s.speaker for s in selection_split(Fold("3", train, test), 0.99, seed=0)[0].train}  # never all
    with pytest.raises(ConfigError, match="fold 1: the training folds have 1 speaker"):
        selection_split(Fold("1", [sample(0, "a"), sample(1, "a")], test), 0.25, seed=0)


def test_cross_validation_chooses_the_epoch_without_the_test_fold(tmp_path, monkeypatch):
    """Fails on the recipe before issue 11, which stopped early on (and reported) the held-out fold."""
    import train.loop
    from train.run import run_training

    scored = []  # (fold, samples scored) each time a selection score is computed
    real = train.loop.FoldTrainer._score
    monkeypatch.setattr(train.loop.FoldTrainer, "_score",
                        lambda self, report: scored.append((self.fold.name, report["n"])) or real(self, report))
    torch.set_num_threads(1)
    summary = run_training(TrainConfig.load(TINY, CV), tmp_path / "cv")
    assert summary["split"] == "selection" and set(summary["test_mean"]) == {"wa", "ua", "macro_f1"}
    for fold in summary["folds"]:
        test, selection = fold["test"], fold["selection_speakers"]
        assert fold["split"] == "selection" and test["split"] == f"test: fold {fold['fold']}"
        assert test["n"] == fold["n_test"] and sum(map(sum, test["confusion"])) == fold["n_test"]
        assert fold["n_val"] + fold["n_train"] + fold["n_test"] == 24
        assert {n for name, n in scored if name == fold["fold"]} == {fold["n_val"]}  # never the test fold
        assert selection and fold["n_val"] < 24 - fold["n_test"]
    card = (tmp_path / "cv" / "fold_2" / "best" / "README.md").read_text()
    assert "These are selection figures" in card and "| 2 (this checkpoint) | test: fold 2 |" in card
    stored = json.loads((tmp_path / "cv" / "results.json").read_text())
    assert stored["test_mean"]["ua"] == pytest.approx(sum(f["test"]["ua"] for f in stored["folds"]) / 3)
