"""End-to-end training on the tiny preset: results, checkpoints, plots, resume, ablations."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from train.config import TrainConfig
from train.loop import TrainingInterrupted, epoch_batches

TINY = Path(__file__).resolve().parents[1] / "train" / "configs" / "tiny.yaml"
SMALL = ["data.synthetic_samples=24", "data.synthetic_speakers=6", "data.synthetic_seconds=0.4",
         "optim.batch_size=4", "optim.grad_accum_steps=2", "optim.max_epochs=3", "optim.patience=0",
         "progress=false", "model.modality_dropout=0.3"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core box run several times faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``python -m train`` on a small tiny config, with a stand-in ``train.publish``."""
    from train.__main__ import main

    out = tmp_path_factory.mktemp("run") / "tiny"
    calls = []
    fake = types.ModuleType("train.publish")
    fake.PublishError = RuntimeError
    fake.publish = lambda output_dir, repo_id: calls.append((Path(output_dir), repo_id)) or f"http://hub/{repo_id}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "train.publish", fake)
        args = ["--config", str(TINY), "--output-dir", str(out), "--push-to-hub", "me/tiny-gia-mic"]
        code = main([*args, *[x for item in SMALL for x in ("--set", item)]])
    assert code == 0
    return out, calls


def test_results_json_is_consistent(cli_run):
    out, _ = cli_run
    results = json.loads((out / "results.json").read_text())
    (fold,) = results["folds"]
    assert set(fold) >= {"fold", "wa", "ua", "macro_f1", "per_class_recall", "confusion", "epochs"}
    confusion = np.array(fold["confusion"])
    assert confusion.sum() == fold["n_val"] == 8  # 2 of 6 speakers held out, 4 clips each
    assert fold["wa"] == pytest.approx(np.trace(confusion) / confusion.sum())
    recalls = [r for r in fold["per_class_recall"].values() if r is not None]
    assert fold["ua"] == pytest.approx(np.mean(recalls))
    assert fold["epochs"] == 3 and 1 <= fold["best_epoch"] <= 3
    for key in ("wa", "ua", "macro_f1"):
        assert results["mean"][key] == pytest.approx(fold[key]) and results["std"][key] == 0.0
    history = json.loads((out / "fold_result.json").read_text())["history"]
    assert max(h["val_ua"] for h in history) == pytest.approx(fold["ua"])
    assert all(np.isfinite(h["train_loss"]) for h in history)


def test_best_checkpoint_loads_in_the_pipeline(cli_run):
    from gia_mic.pipeline import EmotionRecognizer

    out, _ = cli_run
    saved = TrainConfig.load(out / "best" / "train_config.yaml")
    assert saved.to_dict() == TrainConfig.load(out / "train_config.yaml").to_dict()
    recognizer = EmotionRecognizer.from_pretrained(out / "best", asr_model=None, device="cpu")
    assert recognizer.labels == saved.model.labels
    wave = (np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32)
    prediction = recognizer(audio=(wave, 16000), text="i feel great today")
    assert prediction.label in saved.model.labels
    assert sum(s["score"] for s in prediction.scores) == pytest.approx(1.0, abs=1e-4)


def test_plots_and_checkpoint_files(cli_run):
    out, calls = cli_run
    for name in ("curves.png", "confusion.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (checkpoint,) = [p for p in (out / "checkpoints").iterdir() if p.is_dir()]
    assert checkpoint.name == "epoch-0003"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"model.safetensors", "optimizer.safetensors", "rng-0.safetensors", "state.json", "train_config.yaml"} <= names
    assert not [p for p in out.rglob("*") if p.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt")]
    assert calls == [(out, "me/tiny-gia-mic")]


def test_best_checkpoint_carries_the_rendered_card(cli_run):
    from hub_card import check_card

    out, _ = cli_run
    text = (out / "best" / "README.md").read_text()
    check_card(text)
    fold = json.loads((out / "results.json").read_text())["folds"][0]
    assert "## Results" in text and f"| validation | {100 * fold['wa']:.2f} | {100 * fold['ua']:.2f} |" in text
    assert "This checkpoint is **fold" not in text  # a single split has no folds


def test_a_fold_checkpoint_card_names_its_fold():
    from train.loop import FoldTrainer

    cfg = TrainConfig.load(TINY)
    trainer = types.SimpleNamespace(fold=types.SimpleNamespace(name="3"), model=types.SimpleNamespace(config=cfg.model),
                                    cfg=cfg, result=lambda: {"fold": "3", "wa": 0.5, "ua": 0.5, "macro_f1": 0.5})
    assert "This checkpoint is **fold 3**" in FoldTrainer._card(trainer)


def test_resume_matches_an_uninterrupted_run(cli_run, tmp_path):
    from train.run import run_training

    out, _ = cli_run
    cfg = TrainConfig.load(TINY, [*SMALL, "stop_after_epochs=1"])
    with pytest.raises(TrainingInterrupted):
        run_training(cfg, tmp_path / "r")
    assert not (tmp_path / "r" / "results.json").exists()
    with pytest.raises(Exception, match="--resume"):
        run_training(cfg, tmp_path / "r")  # a second fresh start into the same folder is refused
    state_file = tmp_path / "r" / "checkpoints" / "epoch-0001" / "state.json"
    state = json.loads(state_file.read_text())
    state["best_ua"] = state.pop("best_score")  # as written before the rename: still resumes
    state_file.write_text(json.dumps(state))
    run_training(TrainConfig.load(TINY, SMALL), tmp_path / "r", resume=True)

    expected, got = (json.loads((d / "results.json").read_text()) for d in (out, tmp_path / "r"))
    assert got == expected
    for rel in ("checkpoints/epoch-0003/model.safetensors", "checkpoints/epoch-0003/optimizer.safetensors",
                "best/model.safetensors"):
        a, b = load_file(str(out / rel)), load_file(str(tmp_path / "r" / rel))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), rel


def test_resume_refuses_a_changed_config(cli_run, tmp_path):
    from gia_mic.configuration import ConfigError
    from train.run import run_training

    out, _ = cli_run
    changed = TrainConfig.load(TINY, [*SMALL, "optim.lr=0.5"])
    with pytest.raises(ConfigError, match="optim.lr"):
        run_training(changed, out, resume=True)


def test_ablation_table(tmp_path, monkeypatch):
    import train.loop
    from train.ablate import VARIANTS, run_ablations

    calls = []
    real = train.loop.extract_frozen
    monkeypatch.setattr(train.loop, "extract_frozen", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = TrainConfig.load(TINY, [*SMALL, "optim.max_epochs=1", "data.synthetic_samples=16",
                                  "data.synthetic_speakers=4", "data.val_fraction=0.25"])
    results = run_ablations(cfg, tmp_path)
    assert len(calls) == 1  # clips decoded and encoded once for the four variants
    table = (tmp_path / "ablations.md").read_text().strip().splitlines()
    assert len(table) == 2 + len(VARIANTS)
    for line, (name, summary) in zip(table[2:], results.items()):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == VARIANTS[name][0]
        assert float(cells[1].split("±")[0]) == pytest.approx(100 * summary["mean"]["wa"], abs=0.051)
    assert json.loads((tmp_path / "no_msr" / "best" / "config.json").read_text())["use_msr"] is False
    assert json.loads((tmp_path / "no_mic" / "best" / "config.json").read_text())["mic_weight"] == 0.0
    stored = json.loads((tmp_path / "ablations.json").read_text())
    assert set(stored) == set(VARIANTS) and stored["no_mir"]["paper_delta_wa"] == -0.9
    cache_files = list((tmp_path / "feature_cache").rglob("*.safetensors"))
    assert len(cache_files) == 2 * 16  # video + text once per clip, shared by the four variants


def test_epoch_batches_shard_and_repeat():
    one = epoch_batches(10, 3, seed=1, epoch=2)
    assert sorted(i for b in one for i in b) == list(range(10))
    assert one == epoch_batches(10, 3, seed=1, epoch=2) != epoch_batches(10, 3, seed=1, epoch=3)
    shards = [epoch_batches(10, 3, seed=1, epoch=2, rank=r, world=3) for r in range(3)]
    assert all(len(s) == len(one) for s in shards)  # every rank takes one step per global batch
    for k, batch in enumerate(one):  # the global batch, split over the ranks
        assert sorted(i for s in shards for i in s[k]) == sorted(batch) or len(batch) < 3
    assert [s[-1] for s in shards] == [[one[-1][0]], [one[-1][0]], [one[-1][0]]]  # a last batch of 1, repeated
    halves = [epoch_batches(12, 4, seed=0, epoch=0, rank=r, world=2) for r in range(2)]
    assert [[len(b) for b in h] for h in halves] == [[2, 2, 2]] * 2


def test_epoch_batches_grouped_by_modalities():
    groups = ["speech+text" if i % 5 == 0 else "text" for i in range(23)]
    batches = epoch_batches(23, 4, seed=0, epoch=1, groups=groups)
    assert sorted(i for b in batches for i in b) == list(range(23))
    assert all(len({groups[i] for i in b}) == 1 for b in batches)
    assert batches == epoch_batches(23, 4, seed=0, epoch=1, groups=groups)
    shards = [epoch_batches(23, 4, seed=0, epoch=1, groups=groups, rank=r, world=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(batches)
    for k, batch in enumerate(batches):
        assert sorted(shards[0][k] + shards[1][k]) == sorted(batch) or len(batch) == 1


def test_the_global_batch_must_split_evenly():
    from gia_mic.configuration import ConfigError
    from train.distributed import per_process_batch

    assert per_process_batch(8, 1) == 8 and per_process_batch(8, 4) == 2
    with pytest.raises(ConfigError, match="optim.batch_size 6 is the global batch.*multiple of the 4 processes"):
        per_process_batch(6, 4)


def test_a_finished_run_can_be_extended_on_resume(cli_run, tmp_path):
    from train.run import run_training

    out, _ = cli_run
    run_training(TrainConfig.load(TINY, [*SMALL, "optim.max_epochs=2"]), tmp_path / "r")
    assert json.loads((tmp_path / "r" / "results.json").read_text())["folds"][0]["epochs"] == 2
    run_training(TrainConfig.load(TINY, SMALL), tmp_path / "r", resume=True)  # max_epochs back to 3
    expected, got = (json.loads((d / "results.json").read_text()) for d in (out, tmp_path / "r"))
    assert got == expected
    assert TrainConfig.load(tmp_path / "r" / "train_config.yaml").optim.max_epochs == 3


def test_per_corpus_validation_and_corpus_mean_selection(tmp_path):
    """Two corpora in one manifest: metrics per corpus, and the best epoch by their mean UA."""
    from train.loop import FoldTrainer
    from train.run import run_training

    words = {"neutral": "plain calm table", "happy": "great joy smile", "angry": "furious rage shout",
             "sad": "tears grief loss"}
    lines = ["id,transcript,label,speaker,split,corpus"]
    for i in range(48):
        label = list(words)[i % 4]
        corpus = "big" if i % 3 else "small"
        split = "val" if i % 4 == (i // 4) % 4 else "train"
        lines.append(f"r{i},{words[label]} {i},{label},s{i % 6},{split},{corpus}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    cfg = TrainConfig.load(TINY, ["data.source=manifest", f"data.manifest={tmp_path / 'm.csv'}", "optim.max_epochs=3",
                                  "optim.patience=0", "progress=false", "optim.select_metric=corpus_mean_ua",
                                  "model.modalities=[text]"])
    run_training(cfg, tmp_path / "run")
    fold = json.loads((tmp_path / "run" / "results.json").read_text())["folds"][0]
    assert set(fold["by_corpus"]) == {"big", "small"}
    assert sum(r["n"] for r in fold["by_corpus"].values()) == fold["n_val"]
    assert fold["select_metric"] == "corpus_mean_ua"
    history = json.loads((tmp_path / "run" / "fold_result.json").read_text())["history"]
    means = [(h["val_ua_big"] + h["val_ua_small"]) / 2 for h in history]
    assert fold["best_epoch"] == 1 + max(range(len(means)), key=lambda k: (means[k], -k))

    report = {"ua": 0.9, "by_corpus": {"big": {"ua": 0.9}, "small": {"ua": 0.3}}}
    score = lambda metric: FoldTrainer._score(types.SimpleNamespace(cfg=TrainConfig.load(  # noqa: E731
        TINY, [f"optim.select_metric={metric}"])), report)
    assert score("ua") == 0.9 and score("corpus_mean_ua") == pytest.approx(0.6)
    with pytest.raises(Exception, match="optim.select_metric: must be one of"):
        TrainConfig.load(TINY, ["optim.select_metric=wa"])


def test_ablation_table_has_a_column_per_corpus():
    from train.ablate import ablation_table, corpus_ua

    def summary(wa, ravdess, meld):
        fold = {"by_corpus": {"ravdess": {"ua": ravdess}, "meld": {"ua": meld}}}
        return {"mean": {"wa": wa, "ua": wa, "macro_f1": wa}, "std": {"wa": 0, "ua": 0, "macro_f1": 0}, "folds": [fold]}

    results = {"full": summary(0.70, 0.76, 0.58), "no_mic": summary(0.68, 0.72, 0.57)}
    assert corpus_ua(results["full"]) == {"meld": 0.58, "ravdess": 0.76}
    lines = ablation_table(results).splitlines()
    assert lines[0] == "| variant | WA (%) | UA (%) | macro-F1 (%) | UA meld (%) | UA ravdess (%) | ΔWA (points) | paper ΔWA |"
    assert lines[3] == "| without MIC (gamma = 0) | 68.0 ± 0.0 | 68.0 ± 0.0 | 68.0 ± 0.0 | 57.0 | 72.0 | -2.0 | -0.7 |"
    assert ablation_table({"full": {**summary(0.7, 0, 0), "folds": []}}).splitlines()[0].count("|") == 7
