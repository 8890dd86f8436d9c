"""The embedded default ``checkpoints/gia-mic-lite``: files, size budget, default, card, and accuracy.

Written for whichever checkpoint is committed: ``evaluation.json`` format 2 (``train.lite`` since
issue 11: every figure names its split) or the format before it; the re-measurement compares
``gia-mic evaluate`` on RAVDESS actors 17-20 (from ``../shared``; skipped without it) with the
stored figures.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from gia_mic.hub import default_model
from gia_mic.pipeline import EmotionRecognizer
from gia_mic.processing import InputError
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
LITE = ROOT / "checkpoints" / "gia-mic-lite"
EVALUATION = json.loads((LITE / "evaluation.json").read_text())
FORMAT = EVALUATION.get("format", 1)
FOUR = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "angry": "angry", "sad": "sad"}
CALIBRATED = FORMAT >= 2
"""Format 2 stores a temperature in config.json and ECE / NLL per test row."""


def stored(corpus: str, modalities: str) -> dict:
    """The stored test row of ``corpus`` (``ravdess``, ``meld``) with ``modalities`` (``speech + text`` ...)."""
    names = {"ravdess": "RAVDESS actors 17-20", "meld": "MELD dev"}  # format 1 named rows by their data only
    (row,) = [e for e in EVALUATION["evaluations"] if e["modalities"] == modalities
              and (e.get("dataset") == corpus if FORMAT >= 2 else e["data"] == names[corpus])]
    return row


@pytest.fixture(scope="module")
def recognizer():
    return EmotionRecognizer.from_pretrained(LITE, asr_model=None, device="cpu")


def test_it_is_the_default(monkeypatch):
    monkeypatch.delenv("GIA_MIC_MODEL", raising=False)
    assert Path(default_model()) == LITE


def test_self_contained_within_the_size_budget():
    files = [p for p in LITE.rglob("*") if p.is_file()]
    names = {p.relative_to(LITE).as_posix() for p in files}
    assert {"config.json", "model.safetensors", "README.md", "evaluation.json"} <= names
    assert any(n.startswith("tokenizer/") for n in names) and any(n.startswith("feature_extractor/") for n in names)
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    size = sum(p.stat().st_size for p in files)
    assert size <= 60e6, f"{size / 1e6:.1f} MB is over the 60 MB budget"
    # format 2 counts the checkpoint without its card and evaluation.json (written after it is measured)
    counted = size if FORMAT < 2 else sum(p.stat().st_size for p in files if p.name not in ("README.md", "evaluation.json"))
    assert EVALUATION["size_mb"] == pytest.approx(counted / 1e6, abs=0.05)


def test_trained_on_speech_and_text_not_video(recognizer):
    config = json.loads((LITE / "config.json").read_text())
    assert config["modalities"] == ["audio", "text"] and config["video_encoder"] is None
    assert config["labels"] == ["neutral", "happy", "angry", "sad"]
    with pytest.raises(InputError, match="not trained on video"):
        recognizer.check_modalities(["video", "audio"])


def test_card_reports_the_measured_numbers():
    text = (LITE / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "gia-mic"
    for phrase in ("CC BY-NC-SA 4.0", "GPL-3.0", "non-commercial", "Not trained on video", "acted"):
        assert phrase in text
    for row in EVALUATION["evaluations"]:
        assert f"{100 * row['ua']:.2f}" in text  # every measured UA is in the card
    if EVALUATION.get("ablations"):  # each variant's test figures, in its own table (no selection figures)
        assert "### Ablations (UA %, test split)" in text and "## Ablations" not in text.replace("### Ablations", "")
        for entry in EVALUATION["ablations"].values():
            assert all(r["split"].startswith("test: ") for r in entry["test"])
            assert f"| {entry['title']} |" in text and f"{100 * entry['mean_ua']:.2f}" in text
    else:  # the card says they were not run rather than showing an empty or stale table
        assert "## Ablations" not in text and "**Ablations**: not rerun" in text


@pytest.mark.skipif(FORMAT < 2, reason="the committed evaluation.json predates named splits (format 1)")
def test_every_figure_names_its_split_and_model_index_holds_test_sets_only():
    from train.lite_report import targets

    rows = EVALUATION["evaluations"]
    assert rows and all(r["split"].startswith("test: ") for r in rows)
    assert EVALUATION["calibration"]["split"] == "selection" and EVALUATION["ablations_split"] == "test"
    assert EVALUATION["targets"] == targets(rows)  # met / missed as the stored figures say
    config = json.loads((LITE / "config.json").read_text())
    assert config["temperature"] == pytest.approx(EVALUATION["temperature"])
    text = (LITE / "README.md").read_text()
    index = yaml.safe_load(text.split("---")[1])["model-index"][0]["results"]
    assert sorted((e["dataset"]["split"], e["dataset"]["name"].split(" (")[0]) for e in index) == sorted(
        {(r["split"], r["data"].split(" ")[0]) for r in rows})  # one entry per test set, named as measured
    assert "targets met" not in text.lower()
    for t in EVALUATION["targets"]:
        assert f"| {t['target']} |" in text and ("**met**" if t["met"] else "**missed**") in text


def test_classifies_a_real_clip_offline(recognizer):
    """A CREMA-D clip shipped in examples/ (no ../shared needed)."""
    clip = ROOT / "examples" / "1001_DFA_ANG_XX.mp4"
    speech = recognizer(video=clip, modalities=["audio"])
    assert speech.label == "angry" and speech.modalities_used == ["audio"]
    both = recognizer(video=clip, text="Don't forget a jacket.")
    assert set(both.modalities_used) == {"audio", "text"} and "video" in both.missing
    assert sum(s["score"] for s in both.scores) == pytest.approx(1.0, abs=1e-5)
    # evaluation.json and the card report what this checkpoint predicts on the shipped examples
    (stored_row,) = [e for e in EVALUATION["examples"] if e["clip"] == clip.name]
    assert (stored_row["true"], stored_row["speech"], stored_row["speech_text"]) == ("angry", speech.label, both.label)
    card = (LITE / "README.md").read_text()
    assert f"{clip.name}: angry -> speech {speech.label}, speech + text {both.label}" in card


def test_ravdess_test_actors_remeasured_match_the_stored_figures(tmp_path):
    """Re-measures speech + transcript on RAVDESS actors 17-20 (never used for training or selection) with
    `gia-mic evaluate`: the same UA (and, format 2, ECE and NLL after the temperature) as evaluation.json."""
    manifest = SHARED_DATA / "ravdess" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip("../shared/data/ravdess is absent (a fresh clone)")
    rows = [r for r in csv.DictReader(manifest.open()) if int(r["actor"]) >= 17 and r["emotion"] in FOUR]
    with open(tmp_path / "test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "transcript"])
        w.writerows([[manifest.parent / r["path"], FOUR[r["emotion"]], r["transcript"]] for r in rows])
    from gia_mic.cli import main as cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(["evaluate", "--model", str(LITE), "--manifest", str(tmp_path / "test.csv"), "--json",
                    "--root", str(manifest.parent),
                    "--modalities", "audio,text", "--asr-model", "none", "--batch-size", "16", "--quiet"])
    assert code == 0
    result = json.loads(out.getvalue())
    expected = stored("ravdess", "speech + text")
    assert result["n"] == expected["n"] == 144
    assert result["ua"] == pytest.approx(expected["ua"], abs=1e-9)
    assert result["per_class_recall"] == pytest.approx(expected["per_class_recall"], abs=1e-9)
    if CALIBRATED:
        assert result["ece"] == pytest.approx(expected["ece"], abs=1e-4)
        assert result["nll"] == pytest.approx(expected["nll"], abs=1e-4)
