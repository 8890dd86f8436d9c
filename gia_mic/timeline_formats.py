"""Timelines as text: JSON, JSON Lines, CSV rows and subtitles (SRT, WebVTT).

Every function returns a string; writing it (atomically) is the caller's job. Rows are flat
dicts, one per segment, so that several recordings (and a row per failed file) can share one
JSON Lines or CSV output. Subtitle cues read ``"<label> <score>%: <words>"``, e.g.
``happy 82%: What a lovely day``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from gia_mic.timeline import Timeline

FORMATS = ("json", "jsonl", "csv", "srt", "vtt")
SUBTITLE_FORMATS = ("srt", "vtt")


def segment_rows(timeline: Timeline, *, file: str | None = None) -> list[dict[str, Any]]:
    """One flat row per segment.

    Columns: ``file``, ``start``, ``end``, ``label``, ``score`` (of the label),
    ``transcript``, ``transcript_source`` and ``score_<label>`` for every class.

    Args:
        timeline: The timeline.
        file: The ``file`` column (default: the timeline's source).
    """
    name = file if file is not None else timeline.source
    rows = []
    for seg in timeline.segments:
        row = {"file": name, "start": round(seg.start, 3), "end": round(seg.end, 3), "label": seg.label,
               "score": round(seg.scores[seg.label], 4), "transcript": seg.transcript,
               "transcript_source": seg.transcript_source}
        row.update({f"score_{label}": round(seg.scores[label], 4) for label in timeline.labels})
        rows.append(row)
    return rows


def to_json(timelines: Timeline | Sequence[Timeline]) -> str:
    """A timeline (or a list of them) with segments and summary, as indented JSON."""
    data = timelines.to_dict() if isinstance(timelines, Timeline) else [t.to_dict() for t in timelines]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    """One JSON object per line."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def to_csv(rows: Sequence[dict[str, Any]], *, columns: Sequence[str] | None = None) -> str:
    """CSV with a header; columns default to every key in first-seen order (missing cells empty)."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def cue_text(label: str, score: float, transcript: str | None) -> str:
    """A subtitle line: the emotion, its probability and the words."""
    head = f"{label} {round(100 * score)}%"
    return f"{head}: {transcript}" if transcript else head


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def _cues(timeline: Timeline) -> list[tuple[str, float, float]]:
    out = []
    for seg in timeline.segments:
        # "-->" would end a cue's timing line early in both formats
        text = cue_text(seg.label, seg.scores[seg.label], seg.transcript).replace("-->", "->")
        out.append((text, seg.start, seg.end))
    return out


def to_srt(timeline: Timeline) -> str:
    """SubRip subtitles: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
    blocks = [f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{text}\n" for i, (text, a, b) in enumerate(_cues(timeline), 1)]
    return "\n".join(blocks)


def to_vtt(timeline: Timeline) -> str:
    """WebVTT subtitles (``&``, ``<`` and ``>`` escaped as the format requires)."""
    blocks = ["WEBVTT\n"]
    for i, (text, a, b) in enumerate(_cues(timeline), 1):
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{i}\n{_clock(a, '.')} --> {_clock(b, '.')}\n{text}\n")
    return "\n".join(blocks)


def render(timelines: Sequence[Timeline], fmt: str) -> str:
    """``timelines`` in one of ``FORMATS`` (subtitles take exactly one timeline).

    Raises:
        ValueError: An unknown format, or subtitles asked for several recordings.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt in SUBTITLE_FORMATS:
        if len(timelines) != 1:
            raise ValueError(f"{fmt} subtitles hold one recording, got {len(timelines)}")
        return to_srt(timelines[0]) if fmt == "srt" else to_vtt(timelines[0])
    if fmt == "json":
        return to_json(list(timelines))
    rows = [row for t in timelines for row in segment_rows(t)]
    return to_jsonl(rows) if fmt == "jsonl" else to_csv(rows)
