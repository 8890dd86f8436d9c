"""What the page says: verdicts, details, the API snippet and tables, as Markdown and rows (no Gradio here)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gia_app.backend import UI_NAMES
from gia_mic.configuration import MODALITIES
from gia_mic.plots import GATE_SENTENCE

LOW_CONFIDENCE = 0.6
"""Below this top score the verdict says the model is unsure (with four classes, chance is 0.25)."""
LOW_CONFIDENCE_TEXT = (f"Scores under {LOW_CONFIDENCE:.0%} mean the model is unsure: read the label as a guess. "
                       "Clips unlike its training data (other languages, noise, acted emotions it does not know) "
                       "can still get high scores.")
EXAMPLE_TRANSCRIPT = "Don't forget a jacket"
VOICES = {"video": "the face", "audio": "the voice", "text": "the words"}
_SAY = {"video": "says", "audio": "says", "text": "say"}
"""How the verdict names each modality's own answer."""
NO_GATES_TEXT = "*No gate plot:* gates sit between speech and words, and this stretch was read from one of them only."
CREMA_D_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}


def markdown_text(text: str) -> str:
    """User text shown literally inside Markdown (no emphasis, links, HTML or headings)."""
    special = "\\`*_{}[]()<>#+-.!|~"
    return "".join(f"\\{ch}" if ch in special else ch for ch in text)


def _names(modalities: Sequence[str]) -> str:
    names = [UI_NAMES[m] for m in MODALITIES if m in modalities]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def header_markdown(config: Any) -> str:
    """The page's title and first lines, from what the checkpoint was trained on."""
    title = {"video": "face", "audio": "voice", "text": "words"}
    shown = [title[m] for m in MODALITIES if m in config.modalities]
    heading = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    missing = [UI_NAMES[m] for m in MODALITIES if m not in config.modalities]
    lines = [f"# Emotion from {heading}",
             f"Upload a short clip of someone speaking (a video or a speech recording) and press **Classify**. "
             f"The model reads the **{_names(config.modalities)}** and answers with one of "
             f"**{', '.join(config.labels)}**."]
    if missing:
        lines.append(f"This model was not trained on {' or '.join(missing)}: a video's picture is ignored, "
                     "only its sound track is used.")
    return "\n\n".join(lines)


def verdict_markdown(pred: Any, file: str | None, config: Any) -> str:
    """The answer in plain words: label and score, what each modality says, doubts and limits."""
    top = pred.scores[0]["score"]
    lines = [f"## {pred.label} ({top:.0%})"]
    if file:
        lines.append(f"File: `{Path(file).name.replace('`', '')}`")
    if says := modalities_sentence(pred.per_modality, pred.agreement, pred.modalities_used):
        lines.append(says)
    if top < LOW_CONFIDENCE:
        lines.append(f"\u26a0\ufe0f **Low confidence**: the top score is under {LOW_CONFIDENCE:.0%}; "
                     "the model is unsure, read this as a guess.")
    unused = [m for m in config.modalities if m not in pred.modalities_used and m in pred.missing]
    if unused:
        lines.append("Not used: " + "; ".join(f"{UI_NAMES[m]} ({_reason(pred.missing[m])})" for m in unused) + ".")
    lines.append(f"<small>This model knows only {', '.join(config.labels)}: other emotions (fear, disgust, "
                 f"surprise\u2026) come out as the nearest of these.</small>")
    return "\n\n".join(lines)


def modalities_sentence(per_modality: dict[str, dict[str, Any]], agreement: bool | None,
                        used: Sequence[str]) -> str:
    """What each modality says on its own and whether they agree ("" when nothing was used)."""
    if len(per_modality) > 1:
        says = "; ".join(f"{VOICES[m]} {_SAY[m]} **{v['label']}** ({v['score']:.0%})" for m, v in per_modality.items())
        says = says[0].upper() + says[1:]
        return f"{says}: **they agree**." if agreement else f"{says}: **they disagree**. The answer above weighs both."
    return f"From {VOICES[used[0]]} alone." if used else ""


def error_markdown(message: str) -> str:
    """A user mistake, shown where the verdict goes (the inputs stay as they are)."""
    return f"### Could not classify this\n\n{markdown_text(message)}"


def new_input_markdown(file: str | None, text: str | None) -> str:
    """What the result area says once a new file arrives and the old result is cleared."""
    lines = [f"New clip{': `' + Path(file).name.replace('`', '') + '`' if file else ''}. Press **Classify**."]
    if text:
        lines.append("The transcript box is not empty: its words will be used for this clip. "
                     "Clear it if they belong to another clip.")
    return "\n\n".join(lines)


def _reason(why: str) -> str:
    return "switched off" if why == "not requested" else why.replace("no audio given", "no speech given")


def details_markdown(pred: Any, cached: bool) -> str:
    """Transcript used, modalities, time taken."""
    if pred.transcript is not None:
        source = pred.transcript_source.replace("whisper:", "written by Whisper ")
        source = "typed" if source == "given" else source
        lines = [f"**Words used** ({source}): \u201c{markdown_text(pred.transcript)}\u201d"]
    else:
        lines = [f"**Words not used**: {_reason(pred.missing.get('text', pred.transcript_reason or 'not available'))}."]
    if pred.gates:
        lines.append(f"*About the plot above:* {GATE_SENTENCE}")
    lines.append(f"*About the scores:* {LOW_CONFIDENCE_TEXT}")
    total = pred.timings_ms.get("total", 0.0) / 1000
    how = "the clip was already read: only the last step ran" if cached else "reading the clip included"
    lines.append(f"Took {total:.1f} s ({how}).")
    return "\n\n".join(lines)


def contribution_rows(pred: Any, trained: Sequence[str]) -> list[list[str]]:
    """Per trained modality: whether it was used, and how the top score changes without it."""
    rows = []
    for m in (m for m in MODALITIES if m in trained):
        if m in pred.modalities_used:
            value = pred.contributions.get(m)
            rows.append([UI_NAMES[m], "used", f"{-value:+.0%}" if value is not None else "n/a (the only one)"])
        elif m in pred.missing:
            rows.append([UI_NAMES[m], f"not used: {_reason(pred.missing[m])}", ""])
    return rows


def api_snippet(url: str, modalities: Sequence[str]) -> str:
    """A runnable ``gradio_client`` call for this page's URL and the loaded model's modalities."""
    wanted = ",".join(m for m in MODALITIES if m in modalities)
    return (f'from gradio_client import Client, handle_file\n\n'
            f'client = Client("{url}")\n'
            f'result = client.predict(handle_file("clip.mp4"), "{EXAMPLE_TRANSCRIPT}", "{wanted}", api_name="/classify")\n'
            f'print(result["label"], result["scores"][0]["score"], result["agreement"])\n')


def api_markdown(url: str, modalities: Sequence[str]) -> str:
    """The 'use it from code' section: Python and MCP."""
    base = url.rstrip("/")
    return (f"**Python** (`pip install gradio_client`):\n\n```python\n{api_snippet(url, modalities)}```\n\n"
            f"`/classify` returns the JSON of `gia-mic predict --json`; `/timeline` takes a file and returns its "
            f"segments. **MCP**: this page is also an MCP server at `{base}/gradio_api/mcp/` with the tools "
            f"`classify` and `timeline`.")


def example_clips(folder: Path, labels: Sequence[str]) -> list[tuple[Path, str]]:
    """CREMA-D example clips whose emotion the model can output, with that expected label."""
    found = []
    for clip in sorted(folder.glob("*.mp4")):
        parts = clip.stem.split("_")
        emotion = CREMA_D_EMOTIONS.get(parts[2]) if len(parts) > 2 else None
        if emotion in labels:
            found.append((clip, emotion))
    return found


def timeline_rows(timeline: Any) -> list[list[str]]:
    """One row per segment: start, end, label, score, words."""
    return [[f"{s.start:.2f}", f"{s.end:.2f}", s.label, f"{s.scores[s.label]:.0%}", s.transcript or ""]
            for s in timeline.segments]


def segment_markdown(segment: Any, index: int, labels: Sequence[str]) -> str:
    """One stretch of the timeline in detail: time span, answer, every score, voice vs words, its words."""
    score = segment.scores[segment.label]
    lines = [f"### Stretch {index + 1}: {segment.start:.2f}\u2013{segment.end:.2f} s: {segment.label} ({score:.0%})",
             "Scores: " + ", ".join(f"{label} {segment.scores[label]:.0%}"
                                    for label in sorted(labels, key=lambda x: -segment.scores[x]))]
    if score < LOW_CONFIDENCE:
        lines.append(f"\u26a0\ufe0f **Low confidence** (under {LOW_CONFIDENCE:.0%}): read this label as a guess.")
    if says := modalities_sentence(segment.per_modality, segment.agreement, segment.modalities_used):
        lines.append(says)
    if segment.transcript is not None:
        source = segment.transcript_source.replace("whisper:", "written by Whisper ")
        lines.append(f"**Words** ({'typed' if source == 'given' else source}): "
                     f"\u201c{markdown_text(segment.transcript)}\u201d")
    else:
        lines.append("**Words not used**: no transcript for this stretch.")
    return "\n\n".join(lines)


def timeline_markdown(timeline: Any) -> str:
    """The timeline's summary line (or why it is empty)."""
    if timeline.summary is None:
        return markdown_text(timeline.message or "no speech found")
    shares = ", ".join(f"{label} {share:.0%}" for label, share in timeline.summary.shares.items() if share > 0)
    used = sorted({m for s in timeline.segments for m in s.modalities_used}, key=MODALITIES.index)
    return (f"**Overall: {timeline.summary.label}** over {timeline.summary.speech_seconds:.1f} s of speech in "
            f"{len(timeline.segments)} stretch{'es' if len(timeline.segments) != 1 else ''} (time by label: {shares}). "
            f"From {_names(used) if used else 'nothing'}"
            f"{'' if 'text' in used else ' (no words: no transcript for the stretches)'}.")
