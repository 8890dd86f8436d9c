"""Predictions over many files: inputs expanded, each file classified or given a timeline, rows out.

``gia-mic predict`` is a thin layer over this: the model loads once, clips are classified in
batches, a file longer than the model's window (or every file, with ``timeline=True``) gets a
timeline instead of a silent truncation, and a file that fails becomes a row with its error
while the others go on. Results are plain dicts; ``render`` turns them into JSON, JSON Lines,
CSV or subtitles. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gia_mic.errors import USER_ERRORS, InputError
from gia_mic.media import MEDIA_SUFFIXES, is_audio_file
from gia_mic.timeline import Timeline
from gia_mic.timeline_formats import SUBTITLE_FORMATS, segment_rows, to_csv, to_srt, to_vtt
from gia_mic.utils import strict_json

OUTPUT_FORMATS = ("json", "jsonl", "csv", "srt", "vtt")
PLAIN_NAMES = {"video": "face", "audio": "voice", "text": "words"}
"""How text output names the modalities for people."""


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Files named directly, plus the media files (by suffix) under each folder, sorted; missing paths kept.

    A path that does not exist is kept, so that it becomes that file's error row.

    Raises:
        InputError: a folder holds no media file.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                raise InputError(f"{path} holds no audio or video files ({', '.join(MEDIA_SUFFIXES)})")
            files.extend(found)
        else:
            files.append(path)
    return list(dict.fromkeys(files))


@dataclass
class FileResult:
    """One input file's outcome: a clip prediction, a timeline, or an error."""

    file: str
    prediction: Any = None
    timeline: Timeline | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether the file could not be analysed."""
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this file."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        if self.timeline is not None:
            return {"file": self.file, "kind": "timeline", **self.timeline.to_dict()}
        p = self.prediction
        return {"file": self.file, "kind": "clip", "label": p.label, "scores": p.scores, "transcript": p.transcript,
                "transcript_source": p.transcript_source, "modalities_used": p.modalities_used,
                "per_modality": p.per_modality, "agreement": p.agreement,
                "timings_ms": {k: round(v, 2) for k, v in p.timings_ms.items()}}

    def rows(self, labels: Sequence[str]) -> list[dict[str, Any]]:
        """Flat rows for JSON Lines / CSV: one per segment of a timeline, else one."""
        if self.error is not None:
            return [{"file": self.file, "error": self.error}]
        if self.timeline is not None:
            return segment_rows(self.timeline, file=self.file)
        p = self.prediction
        scores = {s["label"]: s["score"] for s in p.scores}
        row = {"file": self.file, "start": None, "end": None, "label": p.label, "score": round(scores[p.label], 4),
               "transcript": p.transcript, "transcript_source": p.transcript_source, "agreement": p.agreement}
        row.update({f"score_{label}": round(scores[label], 4) for label in labels})
        for m, answer in p.per_modality.items():
            row[f"{m}_label"], row[f"{m}_score"] = answer["label"], round(answer["score"], 4)
        return [row]


def _item(file: Path, text: str | None) -> dict[str, Any]:
    return {"audio": file, "text": text} if is_audio_file(file) else {"video": file, "text": text}


def analyse(recognizer: Any, files: Sequence[Path], *, text: str | None = None, modalities: object = None,
            timeline: bool | None = None, method: str = "vad", batch_size: int = 8,
            progress: Callable[[int], None] | None = None) -> list[FileResult]:
    """Classifies each file (batched), or gives it a timeline.

    Args:
        recognizer: An ``EmotionRecognizer`` (its ``decoder`` isolates decoding when set).
        files: The inputs, e.g. from ``expand_inputs``.
        text: A transcript for every file (meant for a single file).
        modalities: Modality subset.
        timeline: ``True`` every file gets a timeline; ``False`` never (long files are cut to the
            model's window, with a note); ``None`` only files longer than the window.
        method: Timeline segmentation method.
        batch_size: Clips per encoder batch.
        progress: Called with the number of files just finished (e.g. ``tqdm.update``).
    """
    results = {f: FileResult(str(f)) for f in files}
    queue = list(files) if timeline is not True else []
    for start in range(0, len(queue), batch_size):
        chunk = queue[start : start + batch_size]
        prepared = recognizer.prepare_each([_item(f, text) for f in chunk], modalities=modalities)
        for file, outcome in zip(chunk, prepared):
            _classify(recognizer, results[file], outcome, modalities, timeline)
        if progress:
            progress(sum(results[f].prediction is not None or results[f].error is not None for f in chunk))
    for file, result in results.items():
        if result.prediction is None and result.error is None:
            try:
                result.timeline = recognizer.timeline(file, method=method, modalities=modalities)
            except USER_ERRORS as err:
                result.error = str(err)
            if progress:
                progress(1)
    return [results[f] for f in files]


def _classify(recognizer: Any, result: FileResult, outcome: Any, modalities: object, timeline: bool | None) -> None:
    if isinstance(outcome, Exception):
        result.error = str(outcome)
        return
    if outcome.truncated and timeline is None:
        return  # longer than the window: a timeline instead of a silent cut
    try:
        result.prediction = recognizer.classify(outcome, modalities=modalities, explain=False)
    except USER_ERRORS as err:
        result.error = str(err)
        return
    if outcome.truncated:
        window = recognizer.config.max_audio_seconds
        result.notes.append(f"longer than the model's {window:g}-s window: only the first {window:g} s were used")


# ---------------------------------------------------------------------------------------------- output
def format_for(out: Path | None, fmt: str | None, *, as_json: bool) -> str | None:
    """The output format: ``--format``, else ``--out``'s suffix, else JSON with ``--json``, else text (``None``).

    Raises:
        InputError: an unknown format or suffix.
    """
    if fmt is None and out is not None and out.suffix:
        fmt = out.suffix.lower().lstrip(".")
    if fmt is None:
        return "json" if as_json else None
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"unknown output format {fmt!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def render(results: Sequence[FileResult], fmt: str, labels: Sequence[str], *, single: bool = False) -> str:
    """All results in one text: JSON (one object with ``single``, else a list), JSON Lines or CSV."""
    if fmt == "json":
        data = results[0].to_dict() if single else [r.to_dict() for r in results]
        return strict_json(data, indent=2) + "\n"
    rows = [row for r in results for row in r.rows(labels)]
    return "".join(strict_json(row) + "\n" for row in rows) if fmt == "jsonl" else to_csv(rows)


def subtitles(result: FileResult, fmt: str) -> str:
    """SRT or WebVTT of one file's timeline.

    Raises:
        InputError: the file has no timeline (``fmt`` needs one).
    """
    assert fmt in SUBTITLE_FORMATS
    if result.timeline is None:
        raise InputError(f"{result.file}: {fmt} subtitles need a timeline")
    return to_srt(result.timeline) if fmt == "srt" else to_vtt(result.timeline)


def text_lines(results: Iterable[FileResult]) -> list[str]:
    """A short human-readable summary per file (the CLI's default output for several files)."""
    lines = []
    for r in results:
        name = Path(r.file).name
        if r.error is not None:
            lines.append(f"{name}: error: {r.error}")
        elif r.timeline is not None:
            tl = r.timeline
            if tl.summary is None:
                lines.append(f"{name}: {tl.message}")
                continue
            shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(tl.summary.shares.items(), key=lambda kv: -kv[1]) if v)
            lines.append(f"{name}: {tl.summary.label} overall, {len(tl.segments)} segments over {tl.duration:.1f} s "
                         f"(time by label: {shares})")
        else:
            p = r.prediction
            line = f"{name}: {p.label} {p.scores[0]['score']:.0%}"
            if p.agreement is not None:
                alone = ", ".join(f"{PLAIN_NAMES[m]} alone: {a['label']} {a['score']:.0%}" for m, a in p.per_modality.items())
                line += f" ({alone}; {'they agree' if p.agreement else 'they disagree'})"
            lines.append(line)
        lines.extend(f"  note: {n}" for n in r.notes)
    return lines
