"""Timeline output formats, each parsed back: JSON, JSON Lines, CSV, SRT, WebVTT."""

from __future__ import annotations

import csv
import html
import io
import json
import re

import pytest

from gia_mic.timeline import Segment, Timeline, summarize
from gia_mic.timeline_formats import FORMATS, cue_text, render, segment_rows, to_csv, to_jsonl, to_srt, to_vtt

LABELS = ["neutral", "happy", "angry", "sad"]


def scores(top: str, p: float) -> dict[str, float]:
    rest = (1 - p) / 3
    return {label: p if label == top else rest for label in LABELS}


@pytest.fixture()
def timeline() -> Timeline:
    segments = [
        Segment(0.5, 2.25, "happy", scores("happy", 0.82), 'She said "yes", then -> left', "whisper:tiny.en", ["audio", "text"]),
        Segment(3.0, 5.5, "angry", scores("angry", 0.6), "a --> b <i>not html</i> & more", "given", ["audio", "text"]),
        Segment(3725.004, 3727.9, "sad", scores("sad", 0.5), None, "missing", ["audio"]),
        Segment(3728.0, 3729.0, "neutral", scores("neutral", 0.7), "zażółć gęślą jaźń, 日本語", "given", ["audio", "text"]),
    ]
    return Timeline(source="talk.mp4", duration=3730.0, method="vad", labels=LABELS, segments=segments,
                    summary=summarize(segments, LABELS), timings_s={"segmentation": 1.0})


def seconds(clock: str) -> float:
    h, m, s = clock.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d[,.]\d{3}) --> (\d\d:\d\d:\d\d[,.]\d{3})\n(.+)")


def parse_cues(text: str) -> list[tuple[int, float, float, str]]:
    blocks = [b for b in text.strip().split("\n\n") if b and b != "WEBVTT"]
    out = []
    for block in blocks:
        match = CUE.fullmatch(block)
        assert match, f"not a cue: {block!r}"
        out.append((int(match[1]), seconds(match[2]), seconds(match[3]), match[4]))
    return out


def test_rows_are_flat_with_every_class(timeline):
    rows = segment_rows(timeline)
    assert len(rows) == 4 and rows[0]["file"] == "talk.mp4"
    assert list(rows[0]) == ["file", "start", "end", "label", "score", "transcript", "transcript_source",
                             "score_neutral", "score_happy", "score_angry", "score_sad"]
    assert rows[0]["score"] == rows[0]["score_happy"] == 0.82 and rows[2]["transcript"] is None
    assert segment_rows(timeline, file="other.wav")[0]["file"] == "other.wav"


def test_json_round_trip(timeline):
    data = json.loads(render([timeline], "json"))
    assert isinstance(data, list) and len(data) == 1
    back = data[0]
    assert back["source"] == "talk.mp4" and back["labels"] == LABELS
    assert [s["label"] for s in back["segments"]] == ["happy", "angry", "sad", "neutral"]
    assert back["segments"][1]["transcript"] == "a --> b <i>not html</i> & more"
    assert back["summary"]["shares"]["sad"] == pytest.approx(2.896 / 8.146, abs=1e-4)


def test_jsonl_round_trip(timeline):
    lines = render([timeline, timeline], "jsonl").splitlines()
    assert len(lines) == 8
    rows = [json.loads(line) for line in lines]
    assert rows[3]["transcript"] == "zażółć gęślą jaźń, 日本語" and rows[2]["start"] == 3725.004


def test_csv_round_trip(timeline):
    text = render([timeline], "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4
    assert rows[0]["transcript"] == 'She said "yes", then -> left' and rows[2]["transcript"] == ""
    assert float(rows[1]["score_angry"]) == 0.6 and float(rows[3]["end"]) == 3729.0


def test_csv_takes_error_rows_of_failed_files(timeline):
    rows = segment_rows(timeline)[:1] + [{"file": "broken.mp4", "error": "broken.mp4 cannot be decoded"}]
    back = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert back[1]["file"] == "broken.mp4" and back[1]["error"].endswith("decoded") and back[1]["label"] == ""
    assert back[0]["error"] == ""
    assert json.loads(to_jsonl(rows).splitlines()[1]) == rows[1]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_round_trip(timeline, fmt):
    text = to_srt(timeline) if fmt == "srt" else to_vtt(timeline)
    assert text.startswith("WEBVTT\n\n") == (fmt == "vtt")
    separator = "," if fmt == "srt" else "."
    assert f"01:02:05{separator}004 --> 01:02:07{separator}900" in text
    cues = parse_cues(text)
    assert [c[0] for c in cues] == [1, 2, 3, 4]
    for cue, seg in zip(cues, timeline.segments):
        assert cue[1] == pytest.approx(seg.start, abs=5e-4) and cue[2] == pytest.approx(seg.end, abs=5e-4)
    first = html.unescape(cues[0][3]) if fmt == "vtt" else cues[0][3]
    assert first == 'happy 82%: She said "yes", then -> left'
    assert cues[2][3] == "sad 50%"
    second = cues[1][3]
    assert "-->" not in second
    if fmt == "vtt":
        assert second == "angry 60%: a -&gt; b &lt;i&gt;not html&lt;/i&gt; &amp; more"
    else:
        assert second == "angry 60%: a -> b <i>not html</i> & more"


def test_empty_timeline_renders(timeline):
    timeline.segments, timeline.summary = [], None
    assert parse_cues(to_srt(timeline)) == [] and to_vtt(timeline) == "WEBVTT\n"
    assert render([timeline], "csv") == "\n" and render([timeline], "jsonl") == ""


def test_cue_text():
    assert cue_text("happy", 0.824, "hi") == "happy 82%: hi" and cue_text("sad", 0.5, None) == "sad 50%"


def test_render_refuses_bad_requests(timeline):
    assert set(FORMATS) == {"json", "jsonl", "csv", "srt", "vtt"}
    with pytest.raises(ValueError, match="unknown format"):
        render([timeline], "xml")
    with pytest.raises(ValueError, match="one recording"):
        render([timeline, timeline], "srt")
