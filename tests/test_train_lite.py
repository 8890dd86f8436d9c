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
def fake_result(ua, ece, nll, n=144, sad=0.7, wa=None):
    """What `gia-mic evaluate --json` returns (the fields train.lite reads)."""
    return {"n": n, "wa": ua if wa is None else wa, "ua": ua, "macro_f1": ua - 0.01, "ece": ece, "nll": nll,
            "per_class_recall": {"neutral": 0.8, "happy": 0.8, "angry": 0.8, "sad": sad},
            "confusion": [[n // 4, 0, 0, 0], [0, n // 4, 0, 0], [0, 0, n // 4, 0], [0, 0, 0, n // 4]]}


def measured_values():
    from train.lite_report import FORMAT, conflict_checks, evaluation_row, split_name, targets

    rows = [evaluation_row("ravdess", "audio,text", fake_result(0.8125, 0.05, 0.61), split_name("ravdess"),
                           fake_result(0.8125, 0.12, 0.74)),
            evaluation_row("ravdess", "audio", fake_result(0.8021, 0.07, 0.65, sad=0.6), split_name("ravdess"),
                           fake_result(0.8021, 0.15, 0.80, sad=0.6)),
            evaluation_row("meld", "text", fake_result(0.5712, 0.09, 1.02, n=897), split_name("meld"),
                           fake_result(0.5712, 0.04, 0.98, n=897))]
    examples = [{"clip": "a_ANG.mp4", "true": "angry", "speech": "angry", "speech_text": "angry"},
                {"clip": "b_DIS.mp4", "true": "disgust", "speech": "sad", "speech_text": "sad"},
                {"clip": "c_SAD.mp4", "true": "sad", "speech": "sad", "speech_text": "neutral"}]
    checks = conflict_checks(rows, examples, ["neutral", "happy", "angry", "sad"],
                             fake_result(0.7604, 0.1, 0.9), previous_meld_ua=0.5628)
    calibration = {"split": "selection", "temperature": 1.734, "temperatures": {"audio+text": 1.9, "text": 1.1},
                   "n": 1200, "before": {"ece": 0.141, "nll": 0.93},
                   "after": {"ece": 0.032, "nll": 0.81}, "by_set": {"ravdess (audio,text)": {}, "meld (text)": {}}}
    return {"format": FORMAT, "temperature": 1.734, "calibration": calibration, "evaluations": rows,
            "targets": targets(rows), "checks": checks, "latency": {"threads": 2, "no_asr_ms": 66.4, "with_asr_ms": 512.6},
            "size_mb": 46.17, "ablations": fake_ablations(), "ablations_split": "test", "examples": examples,
            "text_finetune": {"epochs": [{"epoch": 1, "selection_ua": 0.6021}, {"epoch": 2, "selection_ua": 0.5987}],
                              "best_epoch": 1}}


def fake_ablations():
    """Two variants scored on two test sets (``train.lite_report.ablation_record``), as ``evaluation.json`` holds them."""
    from train.lite_report import ablation_record, evaluation_row, split_name

    def rows(ravdess_ua, meld_ua):
        return [evaluation_row("ravdess", "audio,text", fake_result(ravdess_ua, 0.1, 0.9), split_name("ravdess")),
                evaluation_row("meld", "text", fake_result(meld_ua, 0.1, 0.9, n=897), split_name("meld"))]

    return {"full": ablation_record("GIA-MIC (full)", None, rows(0.75, 0.55), 3),
            "no_mic": ablation_record("without MIC (gamma = 0)", -0.7, rows(0.7, 0.52), 3)}


def test_ablation_table_compares_variants_on_the_same_test_sets_only():
    from train.lite_report import ablation_record, ablation_table

    ablations = fake_ablations()
    table = ablation_table(ablations)
    assert [(c["data"], c["modalities"], c["split"]) for c in table["columns"]] == [
        ("RAVDESS actors 17-20 (test)", "speech + text", "test: actors 17-20"), ("MELD dev (test)", "text", "test: dev")]
    full, no_mic = table["rows"]
    assert full["ua"] == [0.75, 0.55] and full["mean_ua"] == pytest.approx(0.65) and full["delta"] is None
    assert no_mic["ua"] == [0.7, 0.52] and no_mic["delta"] == pytest.approx(-4.0) and no_mic["paper_delta_wa"] == -0.7
    ablations["no_mic"] = ablation_record("without MIC (gamma = 0)", -0.7, ablations["no_mic"]["test"][:1])
    partial = ablation_table(ablations)["rows"][1]  # measured on fewer sets: no change against the full row
    assert partial["ua"] == [0.7, None] and partial["delta"] is None
    assert table["max_epochs"] == 3 and ablation_table(ablations)["max_epochs"] is None  # budgets now differ
    assert ablation_table(None) is None and ablation_table({}) is None
    with pytest.raises(ValueError, match="no test set"):
        ablation_record("without MSR", -1.1, [])


def test_evaluation_rows_name_their_split_and_refuse_a_temperature_that_changes_labels():
    from train.lite_report import evaluation_row, split_name

    row = evaluation_row("meld", "text", fake_result(0.57, 0.04, 0.9), split_name("meld"), fake_result(0.57, 0.1, 1.1))
    assert (row["data"], row["dataset"], row["split"], row["modalities"]) == ("MELD dev (test)", "meld", "test: dev", "text")
    assert (row["ece"], row["ece_uncalibrated"], row["nll"], row["nll_uncalibrated"]) == (0.04, 0.1, 0.9, 1.1)
    assert split_name("nemo", "test", ["SB0", "SA1"]) == "test: speakers SA1, SB0"
    assert split_name("ravdess", "selection") == "selection: actors 15-16"
    moved = fake_result(0.57, 0.1, 1.1)
    moved["confusion"] = [[35, 1, 0, 0], [0, 35, 1, 0], [0, 0, 36, 0], [0, 0, 0, 36]]
    with pytest.raises(ValueError, match="changed the labels"):
        evaluation_row("meld", "text", fake_result(0.57, 0.04, 0.9), "test: dev", moved)


def test_targets_and_checks_are_marked_met_or_missed_on_test_rows():
    m = measured_values()
    by_name = {t["target"]: t for t in m["targets"]}
    assert by_name["RAVDESS UA"]["met"] is True and by_name["RAVDESS UA"]["split"] == "test: actors 17-20"
    assert by_name["RAVDESS UA"]["modalities"] == "speech + text"  # the default input
    assert by_name["RAVDESS sad recall"]["value"] == 0.7 and by_name["RAVDESS sad recall"]["met"] is True
    assert by_name["MELD UA"]["met"] is False  # 0.5712 < 0.58
    assert by_name["ECE MELD dev (test), text"]["met"] is False
    assert by_name["ECE RAVDESS actors 17-20 (test), speech"]["met"] is True
    assert all(t["split"].startswith("test") for t in m["targets"])
    c = m["checks"]
    assert (c["examples"]["clips"], c["examples"]["same_label"], c["examples"]["met"]) == (2, 1, False)
    assert c["neutral_text"]["drop"] == pytest.approx(0.8021 - 0.7604) and c["neutral_text"]["met"] is False
    assert c["meld_text"]["drop"] == pytest.approx(0.5628 - 0.5712) and c["meld_text"]["met"] is True


def test_previous_meld_figure_from_either_format(tmp_path):
    from train.lite_report import previous_meld_text_ua

    old = {"evaluations": [{"data": "RAVDESS actors 17-20", "modalities": "text", "ua": 0.25},
                           {"data": "MELD dev", "modalities": "text", "ua": 0.5628}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert previous_meld_text_ua(tmp_path / "old.json") == 0.5628
    (tmp_path / "new.json").write_text(json.dumps({"evaluations": measured_values()["evaluations"]}))
    assert previous_meld_text_ua(tmp_path / "new.json") == 0.5712
    (tmp_path / "rebuilt.json").write_text(json.dumps(measured_values()))  # its own check's baseline, carried on
    assert previous_meld_text_ua(tmp_path / "rebuilt.json") == 0.5628
    assert previous_meld_text_ua(tmp_path / "none.json") is None


@pytest.fixture()
def lite_run(tmp_path):
    from gia_mic import GiaMicConfig

    config = GiaMicConfig.from_preset("tiny", modalities=["audio", "text"]).to_dict() | {"temperature": 1.734}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_config.yaml").write_text(yaml.safe_dump({"model": config, "optim": {"lr": 5e-4}}))
    results = {"folds": [{"fold": "0", "wa": 0.64, "ua": 0.6, "macro_f1": 0.59, "epochs": 7, "best_epoch": 3}]}
    (tmp_path / "run" / "results.json").write_text(json.dumps(results))
    return config, tmp_path


def test_lite_card_renders_the_measured_values_into_its_prose(lite_run):
    from hub_card import check_card
    from train.lite import EXAMPLE_TRANSCRIPT, render_card

    config, root = lite_run
    text = render_card(config, root / "run", measured_values())
    meta = check_card(text).data.to_dict()
    assert meta["license_name"] == "cc-by-nc-sa-4.0-and-gpl-3.0-derived" and meta["datasets"] == ["declare-lab/MELD"]
    assert meta["license_link"] == "README.md#licences"  # the card's section naming the corpora's terms
    assert "{%" not in text and "{{" not in text.split("## Citation")[0]  # every template tag was rendered
    notes = text.split("## How it was built\n\n")[1].split("\n\n")[0].splitlines()
    assert [n.split("**")[1] for n in notes] == ["Speech encoder", "Text encoder", "Fusion", "No video", "Data", "Size",
                                                 "Calibration", "Ablations", "Latency", "Out of domain"]
    assert all(n.startswith("- **") for n in notes)  # one Markdown line per bullet, however the template wraps it
    assert "**Size**: 46.2 MB on disk" in text
    assert "the MELD selection dialogues: UA 0.602 after epoch 1, 0.599 after epoch 2, kept epoch 1), then frozen" in text
    assert ("one T per modality set (speech + text 1.900, text 1.100, any other set 1.734), each fitted by minimising "
            "the NLL on the selection split (1200 rows; each of 2 selection sets") in text
    assert "On the selection split, ECE (15 bins) 0.141 -> 0.032, NLL 0.930 -> 0.810" in text
    assert "a 3-epoch budget (the full model's own run stopped after 7 epochs; its best was epoch 3), its epoch " \
           "chosen on the selection split like the full model's, and scored on the **test** split" in text
    table = text.split("### Ablations (UA %, test split)\n\n")[1].split("\n\n")[0].splitlines()
    assert table[0] == ("| variant | UA RAVDESS actors 17-20 (test), speech + text | UA MELD dev (test), text | mean UA "
                        "| change (points) | paper's change (WA) |")
    assert table[2:] == ["| GIA-MIC (full) | 75.00 | 55.00 | 65.00 | – | – |",
                         "| without MIC (gamma = 0) | 70.00 | 52.00 | 61.00 | -4.0 | -0.7 |"]
    assert "66 ms with a given transcript, 513 ms with Whisper tiny.en ASR." in text
    assert (f'transcript "{EXAMPLE_TRANSCRIPT}"): of the 2 in the 4 classes, speech alone gets 2 right and '
            "speech + transcript 1.") in text
    assert "(a_ANG.mp4: angry -> speech angry, speech + text angry; b_DIS.mp4: disgust -> speech sad" in text
    for bullet in ("- A **neutral-worded transcript can override emotional speech**",  # the checks were missed
                   "- Whisper base and tiny.en (ASR) weights: OpenAI, MIT licence. all-MiniLM-L6-v2: Apache-2.0."):
        assert bullet in text


def test_lite_card_tables_name_the_split_of_every_figure(lite_run):
    from hub_card import check_card
    from train.lite import render_card

    config, root = lite_run
    text = render_card(config, root / "run", measured_values())
    assert "| RAVDESS UA | RAVDESS actors 17-20 (test) | speech + text | test: actors 17-20 | 0.812 | ≥ 0.80 | **met** |" in text
    assert "| MELD UA | MELD dev (test) | text | test: dev | 0.571 | ≥ 0.58 | **missed** |" in text
    assert "| ECE MELD dev (test), text | MELD dev (test) | text | test: dev | 0.090 | ≤ 0.08 | **missed** |" in text
    assert "| (a) the 2 in-class example clips" in text and "| 1 of 2 | ≥ 3 | **missed** |" in text
    assert "| 76.04 vs 80.21: 4.2 points | ≤ 3 points | **missed** |" in text
    assert "| 57.12 vs 56.28: drop -0.8 points | ≤ 2 points | **met** |" in text
    assert "| RAVDESS actors 17-20 (test) | test: actors 17-20 | 80.21 | – | 81.25 |" in text  # unimodal / bimodal
    assert "| RAVDESS actors 17-20 (test) | speech + text | test: actors 17-20 | 12.00 -> 5.00 | 0.740 -> 0.610 |" in text
    assert "| RAVDESS actors 17-20 (test) | speech + text | 144 | 81.25 | 81.25 | 80.25 | 5.00 | 0.610 |" in text
    assert "| selection | 64.00 | 60.00 | 59.00 | 7 |" in text and "These are selection figures" in text
    assert "targets met" not in text.lower() and "| validation |" not in text
    assert "temperature-scaled (T = 1.73, fitted on the selection split)" in text
    index = check_card(text).data.to_dict()["model-index"][0]["results"]
    assert [(r["dataset"]["type"], r["dataset"]["split"]) for r in index] == [("ravdess", "test: actors 17-20"),
                                                                               ("declare-lab/MELD", "test: dev")]
    assert len(index[0]["metrics"]) == 6  # WA, UA, macro F1 for speech + text and for speech


def test_lite_card_without_ablation_run_or_examples(lite_run):
    from train.lite import render_card

    config, root = lite_run
    text = render_card(config, root / "run", {**measured_values(), "ablations": None, "examples": []})
    assert "**Ablations**: not rerun" in text and "**Out of domain**" not in text and "## Ablations" not in text


def test_card_only_refuses_an_evaluation_json_without_splits(lite_run, capsys):
    from train.lite import main

    _, root = lite_run
    (root / "out").mkdir()
    (root / "out" / "config.json").write_text("{}")
    (root / "out" / "evaluation.json").write_text(json.dumps({"evaluations": []}))
    assert main(["--run", str(root / "run"), "--out", str(root / "out"), "--card-only"]) == 2
    assert "format 1, which does not name the split" in capsys.readouterr().err


def test_card_only_rerenders_from_evaluation_json(lite_run):
    from train.lite import main

    config, root = lite_run
    (root / "out").mkdir()
    (root / "out" / "config.json").write_text(json.dumps(config))
    (root / "out" / "evaluation.json").write_text(json.dumps(measured_values()))
    assert main(["--run", str(root / "run"), "--out", str(root / "out"), "--card-only"]) == 0
    card = (root / "out" / "README.md").read_text()
    assert "| MELD UA | MELD dev (test) | text | test: dev | 0.571 | ≥ 0.58 | **missed** |" in card
    assert json.loads((root / "out" / "evaluation.json").read_text()) == measured_values()


def test_ablations_are_scored_on_the_test_sets_once_finished(tmp_path, monkeypatch):
    """Each finished variant's best checkpoint goes through the test sets; unfinished ones are left out."""
    import train.lite
    from train.lite_report import ABLATION_TEST_SETS

    calls = []

    def fake_measure(model_dir, data_dir, sets):
        calls.append((model_dir, data_dir, sets))
        return [("ravdess", "audio,text", "test: actors 17-20", fake_result(0.7 if "no_mic" in str(model_dir) else 0.75,
                                                                            0.1, 0.9))]

    monkeypatch.setattr(train.lite, "measure", fake_measure)
    assert train.lite.measure_ablations(tmp_path, tmp_path / "data") is None
    for name, finished in (("full", True), ("no_mic", True), ("no_msr", False)):
        (tmp_path / name / "best").mkdir(parents=True)
        (tmp_path / name / "best" / "config.json").write_text("{}")
        if finished:
            (tmp_path / name / "results.json").write_text("{}")
            (tmp_path / name / "train_config.yaml").write_text(yaml.safe_dump({"optim": {"max_epochs": 3}}))
    found = train.lite.measure_ablations(tmp_path, tmp_path / "data")
    assert list(found) == ["full", "no_mic"]  # no_msr has no results.json yet
    assert [c[0] for c in calls] == [tmp_path / "full" / "best", tmp_path / "no_mic" / "best"]
    assert all(c[1] == tmp_path / "data" and c[2] == ABLATION_TEST_SETS for c in calls)
    assert found["no_mic"]["mean_ua"] == 0.7 and found["no_mic"]["test"][0]["split"] == "test: actors 17-20"
    assert found["full"]["title"] == "GIA-MIC (full)" and found["no_mic"]["paper_delta_wa"] == -0.7
    assert found["full"]["max_epochs"] == 3


def test_cremad_codes_map_to_the_labels_the_committed_card_used():
    from train.prepare import CREMAD_EMOTIONS, FOUR_CLASS

    root = Path(__file__).resolve().parents[1]
    stored = json.loads((root / "checkpoints" / "gia-mic-lite" / "evaluation.json").read_text())["examples"]
    for example in stored:
        emotion = CREMAD_EMOTIONS[example["clip"].split("_")[2]]
        assert FOUR_CLASS.get(emotion, emotion) == example["true"], example["clip"]
    assert CREMAD_EMOTIONS["ANG"] == "anger" and FOUR_CLASS["anger"] == "angry"  # corpus name -> model label


# ---------------------------------------------------------------- python -m train.lite end to end, on a tiny model
@pytest.fixture()
def tiny_lite(tmp_path, tiny_checkpoint):
    """A run with best/ (the tiny model), and data/lite's layout: selection/, test/, checks/ (text rows, wav clips)."""
    import shutil

    from tests.clips import make_clip

    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(tiny_checkpoint, run / "best")
    (run / "train_config.yaml").write_text(yaml.safe_dump({"model": json.loads((run / "best" / "config.json").read_text()),
                                                           "optim": {"lr": 5e-4}}))
    (run / "results.json").write_text(json.dumps({"folds": [{"fold": "0", "wa": 0.5, "ua": 0.5, "macro_f1": 0.4,
                                                             "epochs": 2, "best_epoch": 1}]}))
    lines = {"happy": "what a great day", "sad": "I miss her so much", "angry": "stop it right now", "neutral": "ok"}
    for role in ("selection", "test", "checks"):
        (data / role).mkdir(parents=True)
    for i in range(len(lines)):
        make_clip(data / f"clip{i}.wav", seconds=0.6)
    speech = "path,label,transcript,speaker\n" + "".join(f"{data / f'clip{i}.wav'},{label},{text},A{i % 2}\n"
                                                         for i, (label, text) in enumerate(lines.items()))
    words = "path,label,transcript\n" + "".join(f",{label},{text}\n" for label, text in lines.items())
    for role in ("selection", "test"):
        (data / role / "ravdess.csv").write_text(speech)
        (data / role / "meld.csv").write_text(words)
    # A random model is no better than chance, which no temperature can calibrate (T runs to infinity): the
    # selection labels are the tiny model's own answers but one, so its scores carry some information.
    from gia_mic.pipeline import EmotionRecognizer

    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")
    for name, modalities in (("ravdess", ["audio", "text"]), ("meld", ["text"])):
        manifest = data / "selection" / f"{name}.csv"
        rows = list(csv.DictReader(manifest.open()))
        for i, row in enumerate(rows):
            scores = rec(audio=row["path"] or None, text=row["transcript"], modalities=modalities).scores
            row["label"] = scores[1 if i == 0 else 0]["label"]
        with open(manifest, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    (data / "checks" / "ravdess_neutral_text.csv").write_text(speech.replace("what a great day", "ok"))
    return run, data


def test_build_fits_on_selection_only_and_measures_each_test_set(tiny_lite, tmp_path, monkeypatch):
    import train.calibrate
    import train.lite
    from gia_mic import GiaMicConfig

    run, data = tiny_lite
    read = []
    real = train.calibrate.checkpoint_logits
    monkeypatch.setattr(train.calibrate, "checkpoint_logits", lambda m, manifest, mods: read.append(manifest) or
                        real(m, manifest, mods))
    monkeypatch.setattr(train.lite, "SELECTION_SETS", (("ravdess", "audio,text"), ("meld", "text")))
    monkeypatch.setattr(train.lite, "latency", lambda out, data: {"threads": 1, "no_asr_ms": 1.0, "with_asr_ms": 2.0})
    monkeypatch.setattr(train.lite, "example_predictions", lambda out: [
        {"clip": "x_ANG.mp4", "true": "angry", "speech": "angry", "speech_text": "angry"}])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "evaluation.json").write_text(json.dumps(
        {"evaluations": [{"data": "MELD dev", "modalities": "text", "ua": 0.5628}]}))  # the previous checkpoint
    assert train.lite.main(["--run", str(run), "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    assert read and all(Path(m).parent.name == "selection" for m in read)  # never a test row for the temperature
    measured = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert measured["format"] == 2 and measured["calibration"]["split"] == "selection"
    stored = json.loads((tmp_path / "out" / "config.json").read_text())
    assert stored["temperatures"] == measured["temperatures"] == measured["calibration"]["temperatures"]
    assert set(stored["temperatures"]) <= {"audio+text", "text"}  # one per selection modality set that could place it
    rows = measured["evaluations"]
    assert [(r["dataset"], r["modalities"], r["split"]) for r in rows] == [
        ("ravdess", "speech + text", "test: actors 17-20"), ("ravdess", "speech", "test: actors 17-20"),
        ("ravdess", "text", "test: actors 17-20"), ("meld", "text", "test: dev")]  # no nEMO manifest here
    assert all(r["n"] == 4 and {"ece", "nll", "ece_uncalibrated", "nll_uncalibrated"} <= set(r) for r in rows)
    assert measured["checks"]["meld_text"]["previous_ua"] == 0.5628 and measured["checks"]["neutral_text"]["n"] == 4
    if "temperature" in GiaMicConfig.__dataclass_fields__:
        config = json.loads((tmp_path / "out" / "config.json").read_text())
        assert config["temperature"] == pytest.approx(measured["temperature"])
        if abs(measured["temperature"] - 1) > 0.05:  # the pipeline applies it: same labels, other scores
            assert any(abs(r["nll"] - r["nll_uncalibrated"]) > 1e-4 for r in rows)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| ravdess | speech" not in card and "(test) | speech + text | 4 |" in card
