"""The embedded default: data preparation (combined manifest, corpus x class weights) and its model card."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from gia_mic.configuration import ConfigError
from train.data import read_manifest
from train.prepare import lite_rows, write_manifest

NEMO_SPEAKERS = {"EB0": "female", "IC0": "female", "KD0": "female", "MK0": "female",
                 "KS0": "male", "MP0": "male", "SM0": "male", "TP0": "male", "WR0": "male"}
NEMO_EMOTIONS = {"anger": "angry", "happiness": "happy", "neutral": "neutral", "sadness": "sad", "fear": "",
                 "surprised": ""}


def fake_corpora(root, meld_dialogues=30):
    """The real layout in small: RAVDESS actors 01-20, MELD train / dev dialogues, nEMO's 9 speakers."""
    (root / "ravdess").mkdir(parents=True)
    (root / "meld").mkdir()
    (root / "nemo").mkdir()
    with open(root / "ravdess" / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "actor", "emotion", "transcript"])
        for actor in range(1, 21):
            for emotion in ("neutral", "calm", "happy", "sad", "angry", "fearful"):
                w.writerow([f"Actor_{actor:02d}/{actor:02d}-{emotion}.flac", actor, emotion, "Kids are talking by the door"])
    emotions = ["neutral", "joy", "anger", "surprise", "sadness", "neutral"]
    for name, dialogues in (("train_sent_emo.csv", meld_dialogues), ("dev_sent_emo.csv", 4)):
        with open(root / "meld" / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["Sr No.", "Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID"])
            for d in range(dialogues):
                for u in range(6):
                    w.writerow([d * 6 + u, f"{name[:3]} line {d}.{u}", ["Ross", "Monica"][u % 2], emotions[(d + u) % 6], d, u])
    with open(root / "nemo" / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "speaker", "sex", "age", "emotion", "label", "transcript", "duration_s", "md5"])
        for speaker, sex in NEMO_SPEAKERS.items():
            for emotion, label in NEMO_EMOTIONS.items():
                for k in range(2):
                    w.writerow([f"audio/{speaker}/{speaker}_{emotion}_{k}.ogg", speaker, sex, 30, emotion, label,
                                f"Zdanie numer {k}.", 2.0, "0" * 32])


def test_lite_rows_balance_corpus_and_class_cells(tmp_path):
    fake_corpora(tmp_path)
    rows, dropped = lite_rows(tmp_path, augment_dir=tmp_path / "augmented")
    assert dropped == {"fearful": 20, "surprise": 30 + 4, "fear": 18, "surprised": 18}
    totals = defaultdict(float)
    for r in rows:
        if r["split"] == "train":
            totals[(r["corpus"], r["label"])] += float(r["weight"])
        else:
            assert r["weight"] == "1"
    cells = list(totals.values())
    assert len(cells) == 3 * 4  # three corpora, four classes each
    assert max(cells) == pytest.approx(min(cells), rel=1e-4)
    assert {r["corpus"] for r in rows if r["split"] == "val"} == {"ravdess", "meld", "nemo"}
    ravdess_train = [r for r in rows if r["corpus"] == "ravdess" and r["split"] == "train" and not r.get("swap")]
    assert len(ravdess_train) == 14 * 16 * 5  # 14 training actors x 5 kept emotions, as recorded + 15 copies
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


# ---------------------------------------------------------------- the card (hub_card/templates/gia-mic-lite.md.j2)
MEASURED = {
    "evaluations": [{"data": "RAVDESS actors 17-20", "modalities": "speech + text", "n": 144, "wa": 0.75, "ua": 0.7631,
                     "macro_f1": 0.7553}],
    "latency": {"threads": 2, "no_asr_ms": 66.4, "with_asr_ms": 512.6}, "size_mb": 46.17,
    "ablations": {"full": {"mean": {"wa": 0.64, "ua": 0.6, "macro_f1": 0.59}, "by_corpus_ua": {"meld": 0.56}}},
    "examples": [{"clip": "a_ANG.mp4", "true": "angry", "speech": "angry", "speech_text": "neutral"},
                 {"clip": "b_DIS.mp4", "true": "disgust", "speech": "sad", "speech_text": "sad"},
                 {"clip": "c_SAD.mp4", "true": "sad", "speech": "sad", "speech_text": "sad"}],
}


@pytest.fixture()
def lite_run(tmp_path):
    from gia_mic import GiaMicConfig

    config = GiaMicConfig.from_preset("tiny", modalities=["audio", "text"]).to_dict()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_config.yaml").write_text(yaml.safe_dump({"model": config, "optim": {"lr": 5e-4}}))
    results = {"folds": [{"fold": "0", "wa": 0.64, "ua": 0.6, "macro_f1": 0.59, "epochs": 7, "best_epoch": 3}]}
    (tmp_path / "run" / "results.json").write_text(json.dumps(results))
    (tmp_path / "abl" / "full").mkdir(parents=True)
    (tmp_path / "abl" / "full" / "train_config.yaml").write_text(yaml.safe_dump({"optim": {"max_epochs": 3}}))
    return config, tmp_path


def test_lite_card_renders_the_measured_values_into_its_prose(lite_run):
    from hub_card import check_card
    from train.lite import EXAMPLE_TRANSCRIPT, render_card

    config, root = lite_run
    text = render_card(config, root / "run", root / "abl", MEASURED)
    meta = check_card(text).data.to_dict()
    assert meta["license_name"] == "cc-by-nc-sa-4.0-and-gpl-3.0-derived" and meta["datasets"] == ["declare-lab/MELD"]
    assert meta["license_link"] == "README.md#licences"  # the card's section naming both corpora's terms
    assert "{%" not in text and "{{" not in text.split("## Citation")[0]  # every template tag was rendered
    notes = text.split("## How it was built\n\n")[1].split("\n\n")[0].splitlines()
    assert [n.split("**")[1] for n in notes] == ["Speech encoder", "Text encoder", "Fusion", "No video", "Data", "Size",
                                                 "Ablations", "Latency", "Out of domain"]
    assert all(n.startswith("- **") for n in notes)  # one Markdown line per bullet, however the template wraps it
    assert "**Size**: 46.2 MB on disk" in text
    assert "a 3-epoch budget (the full model's own run stopped after 7 epochs; its best was epoch 3)" in text
    assert "66 ms with a given transcript, 513 ms with Whisper tiny.en ASR." in text
    assert (f'transcript "{EXAMPLE_TRANSCRIPT}"): of the 2 in the 4 classes, speech alone gets 2 right and '
            "speech + transcript 1.") in text
    assert "(a_ANG.mp4: angry -> speech angry, speech + text neutral; b_DIS.mp4: disgust -> speech sad" in text
    for bullet in ("- A **neutral-worded transcript can override emotional speech**",
                   "- Whisper tiny.en weights: OpenAI, MIT licence. all-MiniLM-L6-v2: Apache-2.0.",
                   "- **Not trained on video**; the text branch learned from MELD transcripts only."):
        assert bullet in text


def test_lite_card_without_ablation_run_or_examples(lite_run):
    from train.lite import render_card

    config, root = lite_run
    text = render_card(config, root / "run", None, {**MEASURED, "ablations": None, "examples": []})
    assert "a ?-epoch budget" in text and "**Out of domain**" not in text and "## Ablations" not in text


def test_lite_card_reads_finished_ablation_variants(tmp_path):
    """While train.ablate still runs, the card shows the variants that have finished (same entries)."""
    from train.ablate import ablation_entry
    from train.lite import load_ablations

    summary = {"mean": {"wa": 0.6, "ua": 0.5, "macro_f1": 0.4}, "std": {"wa": 0, "ua": 0, "macro_f1": 0},
               "folds": [{"by_corpus": {"meld": {"ua": 0.55}, "ravdess": {"ua": 0.7}}}]}
    assert load_ablations(tmp_path) is None
    (tmp_path / "no_mic").mkdir()
    (tmp_path / "no_mic" / "results.json").write_text(json.dumps(summary))
    assert load_ablations(tmp_path) == {"no_mic": ablation_entry("no_mic", summary)}
    assert load_ablations(tmp_path)["no_mic"]["by_corpus_ua"] == {"meld": 0.55, "ravdess": 0.7}
    (tmp_path / "ablations.json").write_text('{"full": {"mean": {}}}')
    assert load_ablations(tmp_path) == {"full": {"mean": {}}}


def test_cremad_codes_map_to_the_labels_the_committed_card_used():
    from train.prepare import CREMAD_EMOTIONS, FOUR_CLASS

    root = Path(__file__).resolve().parents[1]
    stored = json.loads((root / "checkpoints" / "gia-mic-lite" / "evaluation.json").read_text())["examples"]
    for example in stored:
        emotion = CREMAD_EMOTIONS[example["clip"].split("_")[2]]
        assert FOUR_CLASS.get(emotion, emotion) == example["true"], example["clip"]
    assert CREMAD_EMOTIONS["ANG"] == "anger" and FOUR_CLASS["anger"] == "angry"  # corpus name -> model label
