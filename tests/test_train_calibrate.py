"""Temperature scaling on the selection split (``train.calibrate``): fits, refuses, stores, reads no test rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gia_mic.metrics import expected_calibration_error
from train.calibrate import (
    CalibrationError,
    SelectionSet,
    calibration_summary,
    checkpoint_logits,
    fit_temperature,
    fit_temperatures,
    softmax,
    store_temperature,
)


def overconfident(n: int, temperature: float, seed: int, classes: int = 4) -> SelectionSet:
    """Logits whose labels are drawn from ``softmax(logits / temperature)``: the model is over-confident."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3.0, (n, classes))
    truth = softmax(logits, temperature)
    labels = np.array([rng.choice(classes, p=p) for p in truth])
    return SelectionSet(f"synthetic-{seed}", logits, labels)


@pytest.mark.parametrize("true_t", [0.7, 2.5])
def test_recovers_a_known_temperature_and_lowers_ece(true_t):
    data = overconfident(20_000, true_t, seed=1)
    fitted = fit_temperature([data])
    assert fitted == pytest.approx(true_t, rel=0.05)
    before = expected_calibration_error(softmax(data.logits), data.labels)
    after = expected_calibration_error(softmax(data.logits, fitted), data.labels)
    assert after < before / 3 and after < 0.02


def test_every_set_weighs_the_same_not_every_row():
    """A large set at T = 3 and a small one at T = 1.5: the fit lands between, nearer neither by row count."""
    large, small = overconfident(20_000, 3.0, seed=2), overconfident(2_000, 1.5, seed=3)
    balanced = fit_temperature([large, small])
    pooled = fit_temperature([SelectionSet("all", np.concatenate([large.logits, small.logits]),
                                           np.concatenate([large.labels, small.labels]))])
    assert 1.5 < balanced < 3.0 and balanced < pooled - 0.1  # pooling lets the large set pull it towards 3


def test_summary_names_its_split_and_improves_nll():
    data = overconfident(5_000, 2.0, seed=4)
    summary = calibration_summary([data], fit_temperature([data]))
    assert summary["split"] == "selection" and summary["n"] == 5_000
    assert summary["after"]["nll"] < summary["before"]["nll"] and summary["after"]["ece"] < summary["before"]["ece"]
    assert summary["by_set"]["synthetic-4"]["after"] == summary["after"]


def test_each_modality_set_gets_its_own_temperature():
    """Speech rows over-confident (T = 3), text rows already calibrated (T = 1): one T per set recovers both,
    the global T lies between, and each set's ECE after its own T is below its ECE after the global one."""
    speech = [SelectionSet(f"speech-{i}", d.logits, d.labels, "audio+text")
              for i, d in enumerate((overconfident(8_000, 3.0, seed=5), overconfident(8_000, 3.0, seed=6)))]
    text = SelectionSet("text", *(lambda d: (d.logits, d.labels))(overconfident(8_000, 1.0, seed=7)), "text")
    unknown = SelectionSet("untagged", speech[0].logits, speech[0].labels)  # no modality set: global T only
    temperature, per_set = fit_temperatures([*speech, text, unknown])
    assert sorted(per_set) == ["audio+text", "text"]
    assert per_set["audio+text"] == pytest.approx(3.0, rel=0.06) and per_set["text"] == pytest.approx(1.0, rel=0.06)
    assert 1.0 < temperature < 3.0
    summary = calibration_summary([*speech, text, unknown], temperature, per_set)
    assert summary["temperatures"] == per_set and summary["by_set"]["text"]["temperature"] == per_set["text"]
    assert summary["by_set"]["untagged"]["temperature"] == temperature
    single = calibration_summary([*speech, text], temperature)
    assert summary["by_set"]["text"]["after"]["ece"] < single["by_set"]["text"]["after"]["ece"]
    assert summary["by_set"]["speech-0"]["after"]["ece"] < single["by_set"]["speech-0"]["after"]["ece"]


def test_a_modality_set_that_cannot_place_a_temperature_uses_the_global_one():
    data = overconfident(4_000, 2.0, seed=8)
    perfect = SelectionSet("perfect", np.array([[5.0, 0.0], [0.0, 5.0]] * 2), np.array([0, 1] * 2), "text")
    padded = SelectionSet("speech", data.logits, data.labels, "audio")
    wide = SelectionSet("perfect4", np.pad(perfect.logits, ((0, 0), (0, 2))), perfect.labels, "text")
    temperature, per_set = fit_temperatures([padded, wide])
    assert "text" not in per_set and per_set["audio"] == pytest.approx(2.0, rel=0.1) and temperature > 0


@pytest.mark.parametrize("sets,message", [
    ([], "no selection set"),
    ([SelectionSet("ravdess", np.zeros((0, 4)), np.zeros(0))], "ravdess is empty"),
    ([SelectionSet("x", np.zeros((3, 4)), np.array([0, 1]))], "shape"),
    ([SelectionSet("x", np.array([[0.0, np.inf]]), np.array([0]))], "non-finite"),
    ([SelectionSet("x", np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 2]))], "outside 0..1"),
    ([SelectionSet("x", np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([0, 0]))], "single class"),
    ([SelectionSet("x", np.ones((4, 3)), np.array([0, 1, 2, 0]))], "equal logits"),
    ([SelectionSet("x", np.array([[5.0, 0.0], [0.0, 5.0]]), np.array([0, 1]))], "search bound"),  # all right
])
def test_degenerate_input_is_refused_in_one_line(sets, message):
    with pytest.raises(CalibrationError, match=message) as info:
        fit_temperature(sets)
    assert "\n" not in str(info.value)


def test_store_temperature_keeps_the_other_fields(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"labels": ["a", "b"], "hidden_size": 8}))
    store_temperature(tmp_path, 1.75)
    assert json.loads((tmp_path / "config.json").read_text()) == {"labels": ["a", "b"], "hidden_size": 8,
                                                                  "temperature": 1.75, "temperatures": {}}
    store_temperature(tmp_path, 1.5, {"text": 1.1, "audio+text": 2.0})
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["temperature"] == 1.5 and stored["temperatures"] == {"audio+text": 2.0, "text": 1.1}
    with pytest.raises(CalibrationError, match=r"temperature \(text\) must be a finite number > 0"):
        store_temperature(tmp_path, 1.5, {"text": math.nan})
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(CalibrationError, match="finite number > 0"):
            store_temperature(tmp_path, bad)


def test_checkpoint_logits_are_the_pipeline_scores(tiny_checkpoint, tmp_path):
    """log(scores) of `gia-mic predict` = the logits up to a per-row shift; text-only rows need no media."""
    from gia_mic.pipeline import EmotionRecognizer

    (tmp_path / "sel.csv").write_text("path,label,transcript\n,happy,what a day\n,sad,oh no\n")
    data = checkpoint_logits(tiny_checkpoint, tmp_path / "sel.csv", "text")
    assert data.labels.tolist() == [1, 3] and data.logits.shape == (2, 4)
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")
    scores = rec(text="oh no", modalities=["text"]).scores
    expected = [s["score"] for s in sorted(scores, key=lambda s: rec.labels.index(s["label"]))]
    assert softmax(data.logits[1]) == pytest.approx(expected, abs=1e-6)
    (tmp_path / "bad.csv").write_text("path,label,transcript\n,fearful,eek\n")
    with pytest.raises(CalibrationError, match="bad.csv: 1 row.*line 2: label 'fearful'"):
        checkpoint_logits(tiny_checkpoint, tmp_path / "bad.csv", "text")


def informative_manifest(checkpoint, path, texts) -> None:
    """Text rows labelled with the model's own answer but the first (its second choice): a random model is no
    better than chance, which no temperature can calibrate; these labels make its scores carry information."""
    from gia_mic.pipeline import EmotionRecognizer

    rec = EmotionRecognizer.from_pretrained(checkpoint, asr_model=None, device="cpu")
    labels = [rec(text=t, modalities=["text"]).scores[1 if i == 0 else 0]["label"] for i, t in enumerate(texts)]
    path.write_text("path,label,transcript\n" + "".join(f",{lab},{t}\n" for lab, t in zip(labels, texts)))


def test_cli_fits_on_selection_and_writes_only_when_asked(tiny_checkpoint, tmp_path, capsys):
    import shutil

    from train.calibrate import main

    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    informative_manifest(model, tmp_path / "sel.csv", ["great", "oh no", "stop it", "ok then", "yay", "I miss her"])
    before = (model / "config.json").read_text()
    assert main(["--model", str(model), "--selection", f"{tmp_path / 'sel.csv'}:text"]) == 0
    out = capsys.readouterr().out
    assert "fitted on the selection split, n=6" in out and "(selection)" in out
    assert (model / "config.json").read_text() == before
    assert main(["--model", str(model), "--selection", f"{tmp_path / 'missing.csv'}:text"]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["--model", str(model), "--selection", f"{tmp_path / 'sel.csv'}:text", "--write"]) == 0
    stored = json.loads((model / "config.json").read_text())
    out = capsys.readouterr().out
    assert f"temperature {stored['temperature']:.4f}" in out and f"text: temperature {stored['temperatures']['text']:.4f}" in out
    data = checkpoint_logits(model, tmp_path / "sel.csv", "text")  # the stored text T is undone: logits unchanged
    assert data.modalities == "text"
