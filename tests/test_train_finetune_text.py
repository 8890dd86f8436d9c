"""``train.finetune_text``: the text encoder fine-tuned on MELD's training role, its epoch chosen on selection."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.test_train_lite import fake_corpora
from train.finetune_text import finetune, main, meld_split
from train.prepare import meld_rows


@pytest.fixture()
def tiny_encoder(tiny_model, tiny_checkpoint, tmp_path):
    """A tiny random RoBERTa with its byte-level tokenizer, in one folder (as a Hub text encoder would be)."""
    folder = tmp_path / "encoder"
    tiny_model.encoders["text"].model.save_pretrained(str(folder))
    for f in (tiny_checkpoint / "tokenizer").iterdir():
        shutil.copy(f, folder / f.name)
    return folder


def test_rows_are_prepares_training_and_selection_roles(tmp_path):
    fake_corpora(tmp_path, meld_dialogues=30)
    train_rows, selection_rows = meld_split(tmp_path)
    rows, _ = meld_rows(tmp_path)
    assert sorted(train_rows) == sorted((r["transcript"], ["neutral", "happy", "angry", "sad"].index(r["label"]))
                                        for r in rows if r["split"] == "train")
    assert {t for t, _ in selection_rows} == {r["transcript"] for r in rows if r["split"] == "val"}
    assert not {t for t, _ in train_rows} & {t for t, _ in selection_rows}
    assert not any(t.startswith("dev") for t, _ in train_rows + selection_rows)  # MELD dev is the test split


def test_fine_tuning_changes_the_encoder_keeps_the_best_selection_epoch_and_writes_atomically(tiny_encoder, tmp_path):
    from transformers import AutoModel

    train_rows = [(f"{w} words here", y) for y, w in enumerate(["calm", "great", "furious", "gloomy"])] * 8
    selection_rows = train_rows[:8]
    out = tmp_path / "tuned"
    record = finetune(tiny_encoder, out, train_rows, selection_rows, epochs=2, lr=1e-3, batch_size=8)
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    best = max(record["epochs"], key=lambda e: e["selection_ua"])
    assert record["best_epoch"] == best["epoch"] and record["best_selection_ua"] == best["selection_ua"]
    assert json.loads((out / "finetune.json").read_text())["best_epoch"] == record["best_epoch"]
    assert not list(tmp_path.glob("*.partial"))
    before = AutoModel.from_pretrained(str(tiny_encoder), add_pooling_layer=False).state_dict()
    after = AutoModel.from_pretrained(str(out), add_pooling_layer=False).state_dict()
    assert before.keys() == after.keys() and "head.weight" not in after  # the encoder only
    assert max((before[k].float() - after[k].float()).abs().max() for k in before) > 1e-4


@pytest.mark.parametrize("rows,message", [
    ([], "no MELD rows to fine-tune on"),
    ([("a", 0), ("b", 1), ("c", 2)], "hold no sad sentence"),
])
def test_bad_rows_are_named(tiny_encoder, tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        finetune(tiny_encoder, tmp_path / "out", rows, [("x", 0)], epochs=1)
    assert not (tmp_path / "out").exists()


def test_cli_names_a_missing_corpus_in_one_line_and_skips_a_finished_encoder(tiny_encoder, tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "nowhere"), "--encoder", str(tiny_encoder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "train_sent_emo.csv not found" in err
    done = tmp_path / "done"
    done.mkdir()
    (done / "finetune.json").write_text("{}")
    assert main(["--data-dir", str(tmp_path / "nowhere"), "--encoder", str(tiny_encoder), "--out", str(done)]) == 0
    assert "already fine-tuned" in capsys.readouterr().out
