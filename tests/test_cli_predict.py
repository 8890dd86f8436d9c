"""``gia-mic predict`` over many files and long recordings: rows, formats, timelines, exit codes."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess

import numpy as np
import pytest
import soundfile as sf

from tests.clips import make_clip, speech_like

RATE = 16000


@pytest.fixture()
def cli(capsys):
    """In-process ``gia-mic``: ``(exit code, stdout, stderr)``."""
    from gia_mic.cli import main

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def talk(path, *pieces: float) -> str:
    """A WAV of voice-like bursts (seconds > 0) and silences (seconds < 0)."""
    parts = [speech_like(s, rate=RATE, f0=110 + 20 * i) if s > 0 else np.zeros(int(-s * RATE), np.float32)
             for i, s in enumerate(pieces)]
    sf.write(path, np.concatenate(parts).astype(np.float32), RATE)
    return str(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two short clips, a 20-s recording (longer than the tiny model's 8-s test window), a broken file."""
    root = tmp_path_factory.mktemp("inputs")
    make_clip(root / "a.mp4", seconds=1.0)
    make_clip(root / "sub" / "b.wav", seconds=1.5)
    talk(root / "long.wav", 3.0, -2.0, 4.0, -3.0, 5.0, -3.0)
    (root / "broken.mp4").write_text("not a video")
    (root / "notes.txt").write_text("not media: never picked up from a folder")
    return root


@pytest.fixture(scope="module")
def model(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint with an 8-s window, so that long.wav is longer than it."""
    import shutil

    target = tmp_path_factory.mktemp("model") / "tiny8"
    shutil.copytree(tiny_checkpoint, target)
    config = json.loads((target / "config.json").read_text())
    config["max_audio_seconds"] = 8.0
    (target / "config.json").write_text(json.dumps(config))
    return target


def base(model):
    return ["predict", "--model", model, "--asr-model", "none"]


def test_folder_and_files_load_once_and_a_failure_is_a_row(cli, model, folder, monkeypatch):
    from gia_mic.pipeline import EmotionRecognizer

    loads = []
    real = EmotionRecognizer.from_pretrained.__func__
    monkeypatch.setattr(EmotionRecognizer, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loads.append(a) or real(cls, *a, **k)))
    result = cli(*base(model), folder, folder / "missing.wav", "--format", "jsonl", "--no-isolation")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(loads) == 1 and result.returncode == 1
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"].rsplit("/", 1)[-1], []).append(row)
    assert set(by_file) == {"a.mp4", "b.wav", "long.wav", "broken.mp4", "missing.wav"}
    assert "not a video or audio clip" in by_file["broken.mp4"][0]["error"]
    assert "file not found" in by_file["missing.wav"][0]["error"]
    assert by_file["a.mp4"][0]["start"] is None and by_file["a.mp4"][0]["label"]
    assert len(by_file["long.wav"]) >= 2 and all(r["end"] > r["start"] for r in by_file["long.wav"])
    assert "predicting" in result.stderr  # the progress bar


def test_csv_and_json_outputs_parse_back(cli, model, folder, tmp_path):
    out = tmp_path / "results.csv"
    assert cli(*base(model), folder, "--out", out, "--quiet").returncode == 1
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {"file", "start", "end", "label", "score", "error"} <= set(rows[0])
    assert sum(bool(r["error"]) for r in rows) == 1 and all(r["label"] for r in rows if not r["error"])
    out = tmp_path / "results.json"
    cli(*base(model), folder, "--out", out, "--quiet")
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(c))
    kinds = {d["file"].rsplit("/", 1)[-1]: d.get("kind", "error") for d in data}
    assert kinds == {"a.mp4": "clip", "b.wav": "clip", "long.wav": "timeline", "broken.mp4": "error"}


def test_long_file_gets_a_timeline_unless_told_otherwise(cli, model, folder):
    long = folder / "long.wav"
    default = json.loads(cli(*base(model), long, "--json").stdout)
    assert default["kind"] == "timeline" and len(default["segments"]) >= 2 and default["summary"]["label"]
    cut = cli(*base(model), long, "--json", "--no-timeline")
    data = json.loads(cut.stdout)
    assert data["kind"] == "clip" and cut.returncode == 0
    text = cli(*base(model), long, "--no-timeline").stdout
    assert "note: longer than the model's 8-s window" in text
    short = json.loads(cli(*base(model), folder / "a.mp4", "--json", "--timeline").stdout)
    assert short["kind"] == "timeline"


SRT_CUE = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)$")


def test_subtitles_one_file_and_a_folder(cli, model, folder, tmp_path):
    srt = cli(*base(model), folder / "long.wav", "--format", "srt").stdout
    cues = [SRT_CUE.match(block) for block in srt.strip().split("\n\n")]
    assert cues and all(cues) and [int(c.group(1)) for c in cues] == list(range(1, len(cues) + 1))
    assert all(re.match(r"(neutral|happy|angry|sad) \d+%", c.group(4)) for c in cues)
    vtt_dir = tmp_path / "subs"
    result = cli(*base(model), folder / "a.mp4", folder / "long.wav", "--format", "vtt", "--out", vtt_dir, "--quiet")
    assert result.returncode == 0
    assert sorted(p.name for p in vtt_dir.iterdir()) == ["a.vtt", "long.vtt"]
    assert (vtt_dir / "long.vtt").read_text().startswith("WEBVTT")
    refused = cli(*base(model), folder / "a.mp4", folder / "long.wav", "--format", "srt")
    assert refused.returncode == 2 and "--out FOLDER" in refused.stderr


def test_silence_gives_an_empty_timeline_not_an_error(cli, model, tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(12 * RATE, np.float32), RATE)
    result = cli(*base(model), tmp_path / "quiet.wav", "--json")
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["segments"] == [] and "no speech" in data["message"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--text", "hi"], "--text gives one transcript"),
    (["--timeline", "--no-timeline"], "contradict"),
    (["--format", "xml"], "invalid choice"),
])
def test_predict_usage_errors(cli, model, folder, extra, message):
    result = cli(*base(model), folder, *extra)
    assert result.returncode == 2 and message in result.stderr


def test_empty_folder_is_a_user_error(cli, model, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli(*base(model), tmp_path / "empty")
    assert result.returncode == 2 and "holds no audio or video files" in result.stderr
