"""The embedded default's data preparation: combined manifest, corpus x class weights."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

from gia_mic.configuration import ConfigError
from train.data import read_manifest
from train.prepare import lite_rows, write_manifest


def fake_corpora(root):
    (root / "ravdess").mkdir(parents=True)
    (root / "meld").mkdir()
    with open(root / "ravdess" / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "actor", "emotion", "transcript"])
        for actor in (1, 2, 17):
            for emotion in ("neutral", "calm", "happy", "sad", "angry", "fearful"):
                w.writerow([f"Actor_{actor:02d}/{actor:02d}-{emotion}.flac", actor, emotion, "Kids are talking by the door"])
    for name, n in (("train_sent_emo.csv", 10), ("dev_sent_emo.csv", 3)):
        with open(root / "meld" / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["Sr No.", "Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID"])
            for i in range(n):
                w.writerow([i, f"line {i}", "Ross", ["neutral", "joy", "anger", "surprise"][i % 4], 0, i])


def test_lite_rows_balance_corpus_and_class_cells(tmp_path):
    fake_corpora(tmp_path)
    rows, dropped = lite_rows(tmp_path, augment_dir=tmp_path / "augmented")
    assert dropped == {"fearful": 3, "surprise": 2}
    totals = defaultdict(float)
    for r in rows:
        if r["split"] == "train":
            totals[(r["corpus"], r["label"])] += float(r["weight"])
        else:
            assert r["weight"] == "1"
    cells = list(totals.values())
    assert len(cells) == 4 + 3  # RAVDESS has 4 classes, MELD train has neutral/joy/anger here
    assert max(cells) == pytest.approx(min(cells), rel=1e-4)
    assert {r["corpus"] for r in rows if r["split"] == "val"} == {"ravdess", "meld"}
    ravdess_train = [r for r in rows if r["corpus"] == "ravdess" and r["split"] == "train"]
    assert len(ravdess_train) == 16 * 2 * 5  # 2 training actors x 5 kept emotions, as recorded + 15 copies
    assert all(r["path"].endswith(f"{r['augment_id']}-a{r['id'].rsplit('-a', 1)[1]}.wav")
               for r in ravdess_train if "augment_id" in r)
    assert len({r["id"] for r in rows}) == len(rows)


def test_manifest_weight_column(tmp_path):
    fake_corpora(tmp_path)
    rows, _ = lite_rows(tmp_path)
    write_manifest(rows, tmp_path / "lite.csv")
    samples, _ = read_manifest(tmp_path / "lite.csv", labels=["neutral", "happy", "angry", "sad"], label_map={})
    by_id = {r["id"]: float(r["weight"]) for r in rows}
    assert all(s.weight == pytest.approx(by_id[s.id]) for s in samples)
    assert len({round(s.weight, 4) for s in samples}) > 2


@pytest.mark.parametrize("value,message", [("abc", "not a number"), ("-1", "must be > 0")])
def test_bad_weight_is_named(tmp_path, value, message):
    (tmp_path / "m.csv").write_text(f"path,label,speaker,transcript,weight\n,happy,s1,hi,{value}\n")
    with pytest.raises(ConfigError, match=f"line 2: .*{message}"):
        read_manifest(tmp_path / "m.csv", labels=["neutral", "happy"], label_map={})
