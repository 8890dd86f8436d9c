"""The ``gia-mic`` CLI contract: predict JSON, evaluate metrics, clear errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.clips import make_clip

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.getcwd()}


def subprocess_cli(*args, check=True):
    """The real console entry point, in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-m", "gia_mic.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture()
def cli(capsys):
    """In-process ``gia-mic`` (fast); returns an object like CompletedProcess."""
    from gia_mic.cli import main

    def run(*args, check=True):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        result = subprocess.CompletedProcess(args, code, out, err)
        if check:
            assert code == 0, err
        return result

    return run


def test_predict_json_contract(tiny_checkpoint, tmp_path):
    clip = make_clip(tmp_path / "c.mp4", seconds=1.0)
    out = json.loads(subprocess_cli("predict", clip, "--model", tiny_checkpoint, "--json", "--text", "hello there",
                         "--asr-model", "none").stdout)
    assert set(out) == {"file", "kind", "label", "scores", "transcript", "transcript_source", "modalities_used",
                        "per_modality", "agreement", "timings_ms"}
    assert out["kind"] == "clip" and out["file"] == str(clip)
    assert set(out["per_modality"]) == {"video", "audio", "text"} and isinstance(out["agreement"], bool)
    assert out["label"] == out["scores"][0]["label"]
    assert abs(sum(s["score"] for s in out["scores"]) - 1) < 1e-5
    assert out["transcript"] == "hello there" and out["transcript_source"] == "given"
    assert out["modalities_used"] == ["video", "audio", "text"]
    assert {"decode", "encoder_video", "encoder_audio", "encoder_text", "fusion", "total"} <= set(out["timings_ms"])


def test_predict_modalities_and_audio_file(cli, tiny_checkpoint, tmp_path):
    wav = make_clip(tmp_path / "c.wav", seconds=1.0)
    out = json.loads(cli("predict", wav, "--model", tiny_checkpoint, "--json", "--modalities", "speech",
                         "--asr-model", "none").stdout)
    assert out["modalities_used"] == ["audio"] and out["transcript"] is None


def test_predict_human_output(cli, tiny_checkpoint, tmp_path):
    clip = make_clip(tmp_path / "c.mp4", seconds=1.0)
    out = cli("predict", clip, "--model", tiny_checkpoint, "--asr-model", "none").stdout
    assert "modalities used: video, audio" in out and "not used: text" in out


@pytest.mark.parametrize("args,message", [
    (["predict", "missing.mp4"], "file not found"),
    (["predict", "x.mp4", "--modalities", "smell"], "unknown modality"),
    (["predict", "x.mp4", "--modalities", ","], "empty"),
])
def test_errors_are_one_line_and_exit_2(cli, tiny_checkpoint, args, message):
    proc = cli(*args, "--model", tiny_checkpoint, "--asr-model", "none", check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_model_is_explained(cli, tmp_path):
    proc = cli("predict", "x.mp4", "--model", tmp_path / "nothing", check=False)
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr


def test_evaluate(cli, tiny_checkpoint, tmp_path):
    rows = [("a.mp4", "happy", "great news"), ("b.wav", "sad", ""), ("", "angry", "stop it now"),
            ("", "fearful", "eek"), ("c.mp4", "neutral", "ok")]
    make_clip(tmp_path / "a.mp4", seconds=1.0)
    make_clip(tmp_path / "b.wav", seconds=1.0)
    make_clip(tmp_path / "c.mp4", seconds=0.8)
    with open(tmp_path / "m.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "transcript"])
        writer.writerows(rows)
    proc = cli("evaluate", "--model", tiny_checkpoint, "--manifest", tmp_path / "m.csv", "--json", "--asr-model", "none",
               "--batch-size", "2")
    out = json.loads(proc.stdout)
    assert out["n"] == 4 and out["skipped"] == 1 and out["errors"] == []
    assert sum(map(sum, out["confusion"])) == 4
    assert 0 <= out["wa"] <= 1 and 0 <= out["ua"] <= 1 and 0 <= out["macro_f1"] <= 1
    assert 0 <= out["ece"] <= 1 and out["nll"] > 0
    assert set(out["per_class_recall"]) == {"neutral", "happy", "angry", "sad"}
    assert "evaluating" in proc.stderr  # the progress bar


def test_evaluate_ece_and_nll_come_from_the_pipeline_scores(cli, tiny_checkpoint, tmp_path):
    """One row: ECE = |right - top score| and NLL = -log(score of the true label), from `predict`'s scores."""
    import math

    make_clip(tmp_path / "a.wav", seconds=1.0)
    (tmp_path / "m.csv").write_text("path,label,transcript\na.wav,sad,oh no\n")
    scores = json.loads(cli("predict", tmp_path / "a.wav", "--model", tiny_checkpoint, "--json", "--text", "oh no",
                            "--asr-model", "none").stdout)["scores"]
    out = json.loads(cli("evaluate", "--model", tiny_checkpoint, "--manifest", tmp_path / "m.csv", "--json",
                         "--asr-model", "none").stdout)
    by_label = {s["label"]: s["score"] for s in scores}
    right = float(scores[0]["label"] == "sad")
    assert out["ece"] == pytest.approx(abs(right - scores[0]["score"]), abs=1e-6)
    assert out["nll"] == pytest.approx(-math.log(by_label["sad"]), abs=1e-6)
    human = cli("evaluate", "--model", tiny_checkpoint, "--manifest", tmp_path / "m.csv", "--asr-model", "none").stdout
    assert f"ECE {out['ece']:.4f} (15 bins)  NLL {out['nll']:.4f}" in human


def test_evaluate_counts_bad_rows(cli, tiny_checkpoint, tmp_path):
    make_clip(tmp_path / "a.mp4", seconds=1.0)
    (tmp_path / "bad.mp4").write_text("not a video")
    (tmp_path / "m.csv").write_text("path,label,transcript\na.mp4,happy,yay\nbad.mp4,sad,oh no\n")
    proc = cli("evaluate", "--model", tiny_checkpoint, "--manifest", tmp_path / "m.csv", "--json",
               "--asr-model", "none", check=False)
    out = json.loads(proc.stdout)
    assert out["n"] == 1 and len(out["errors"]) == 1 and "line 3" in out["errors"][0]
    assert proc.returncode == 1  # partial: figures over the rows that could be scored


def test_evaluate_bad_manifest(cli, tiny_checkpoint, tmp_path):
    (tmp_path / "m.csv").write_text("file,emotion\nx,y\n")
    proc = cli("evaluate", "--model", tiny_checkpoint, "--manifest", tmp_path / "m.csv", check=False)
    assert proc.returncode == 2 and "needs the columns" in proc.stderr


def test_metrics_by_hand():
    from gia_mic.metrics import classification_report

    r = classification_report([0, 0, 0, 1, 2, 2], [0, 0, 1, 1, 2, 0], ["a", "b", "c", "d"])
    assert r["wa"] == pytest.approx(4 / 6)
    assert r["ua"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert r["per_class_recall"]["d"] is None
    assert r["confusion"][0] == [2, 1, 0, 0]
