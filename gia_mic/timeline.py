"""Emotion over time: a recording of any length split into utterances, each one classified.

``build_timeline`` (called as ``EmotionRecognizer.timeline``) makes two streaming passes, so
memory stays bounded whatever the length (one chunk of audio and one batch of segments):

1. **Segmentation** into regions of at most the model window (``config.max_audio_seconds``):
   ``"vad"`` (default) speech found by Silero VAD (``gia_mic.vad``); ``"whisper"`` Whisper's
   own segments with their words; ``"fixed"`` consecutive windows of the model's length
   (windows with no signal are skipped); or ``spans`` that the caller gives.
2. **Classification**: the audio of each region, with up to ``CONTEXT_SECONDS`` around it
   (``context_windows``), is cut from a second pass over the stream, and regions go through
   ``prepare_batch`` / ``classify_batch`` in batches. With a model that reads text and no
   text for a region, the recognizer's ASR transcribes that audio.

A recording with no speech gives an empty timeline whose ``message`` says so.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gia_mic.audio_stream import probe_media, stream_audio
from gia_mic.errors import InputError, MediaError
from gia_mic.processing import clean_text
from gia_mic.vad import VAD_RATE, VadOptions, speech_probabilities, speech_regions
from gia_mic.waveform import prepare_waveform

logger = logging.getLogger(__name__)

METHODS = ("vad", "whisper", "fixed")
CHUNK_SECONDS = 30.0
"""Audio decoded per step of either pass."""
WHISPER_BLOCK_SECONDS = 120.0
"""Audio Whisper segments at once with ``method="whisper"``; the block's last segment is redone."""
CONTEXT_SECONDS = 1.0
"""Audio on each side of a segment that the model hears with it. The lite model learnt from
whole clips, pauses included: on RAVDESS actors 15-16 it labelled 0.90 of speech time right
when given the exact true speech and 0.96 with 1 s around it (whole clips: 0.97); 0.5, 1.5
and 2 s of context did worse than 1 s with VAD segments."""
SILENT_RMS = 1e-4
"""A fixed window whose RMS is below this (-80 dBFS) holds no signal and is skipped."""

Progress = Callable[[float, float], None]
"""``progress(done_seconds, total_seconds)``, called after each batch of segments."""


@dataclass
class Segment:
    """One classified stretch of the recording.

    Attributes:
        start: Seconds from the start of the recording.
        end: Seconds from the start of the recording.
        label: The top class.
        scores: Class -> probability, in the model's label order, summing to 1.
        transcript: The words of this stretch (``None`` when the model had no text).
        transcript_source: ``"given"``, ``"whisper:<model>"`` or ``"missing"``.
        modalities_used: Modalities that reached the model for this stretch.
        per_modality: Modality -> ``{"label", "score"}``: what each one says on its own
            (``Prediction.per_modality``).
        agreement: Whether those answers agree (``None`` with one modality).
    """

    start: float
    end: float
    label: str
    scores: dict[str, float]
    transcript: str | None = None
    transcript_source: str = "missing"
    modalities_used: list[str] = field(default_factory=list)
    per_modality: dict[str, dict[str, Any]] = field(default_factory=dict)
    agreement: bool | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start


@dataclass
class TimelineSummary:
    """The whole recording at a glance.

    Attributes:
        label: Top class of ``scores``.
        scores: Class -> segment scores averaged with each segment weighted by its duration.
        shares: Class -> fraction of the segments' time whose top class it is.
        speech_seconds: Total duration of the segments.
    """

    label: str
    scores: dict[str, float]
    shares: dict[str, float]
    speech_seconds: float


@dataclass
class Timeline:
    """Segments of one recording and their summary (``summary`` is ``None`` when empty)."""

    source: str | None
    duration: float
    method: str
    labels: list[str]
    segments: list[Segment]
    summary: TimelineSummary | None
    message: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def summarize(segments: Sequence[Segment], labels: Sequence[str]) -> TimelineSummary | None:
    """Duration-weighted scores and label shares of ``segments`` (``None`` when there are none)."""
    if not segments:
        return None
    weights = np.array([max(s.duration, 0.0) for s in segments])  # (S,)
    weights = weights if weights.sum() > 0 else np.ones(len(segments))
    probs = np.array([[s.scores[label] for label in labels] for s in segments])  # (S, C)
    mean = weights @ probs / weights.sum()  # (C,)
    tops = np.array([s.label for s in segments])
    shares = {label: float(weights[tops == label].sum() / weights.sum()) for label in labels}
    return TimelineSummary(label=labels[int(np.argmax(mean))], scores=dict(zip(labels, mean.tolist())),
                           shares=shares, speech_seconds=float(sum(s.duration for s in segments)))


# ---------------------------------------------------------------------------------- the recording
@dataclass
class PcmFile:
    """Raw little-endian float32 mono samples at the model's rate (an isolated worker's transcode)."""

    path: Path
    samples: int
    name: str


class _Recording:
    """A file (streamed), raw PCM (memory-mapped) or an in-memory waveform, read as mono float32 chunks."""

    def __init__(self, source: Any, rate: int, min_seconds: float) -> None:
        self.rate = rate
        self.path: Path | None = None
        self.array: np.ndarray | None = None
        self.display: str | None = None
        self.pcm: Path | None = None
        if isinstance(source, PcmFile):
            if source.samples < min_seconds * rate:
                raise MediaError(f"{source.name}: its audio is {source.samples / rate:.2f} s long; at least "
                                 f"{min_seconds:g} s is needed")
            self.pcm = source.path
            self.display, self.declared = source.name, source.samples / rate
        elif isinstance(source, (str, Path)):
            info = probe_media(source)
            if not info.has_audio:
                raise MediaError(f"{info.path} has no audio track: a timeline needs speech")
            self.path, self.declared = Path(info.path), info.duration
        else:
            array, given_rate = source if isinstance(source, tuple) else (source, rate)
            self.array, _ = prepare_waveform(array, given_rate, target_rate=rate, min_seconds=min_seconds,
                                             max_seconds=float("inf"))
            self.declared = len(self.array) / rate
        self.samples = 0  # counted by the first pass

    @property
    def name(self) -> str | None:
        return self.display if self.path is None else str(self.path)

    def chunks(self, seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
        step = max(1, round(seconds * self.rate))
        if self.pcm is not None:
            with open(self.pcm, "rb") as handle:  # one chunk in memory at a time
                while len(chunk := np.fromfile(handle, dtype="<f4", count=step)):
                    yield chunk.astype(np.float32, copy=False)
        elif self.array is not None:
            yield from (self.array[i : i + step] for i in range(0, len(self.array), step))
        else:
            yield from stream_audio(self.path, sample_rate=self.rate, chunk_seconds=seconds)

    def counted(self, seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
        """``chunks`` that also set ``samples`` to the recording's length."""
        self.samples = 0
        for chunk in self.chunks(seconds):
            self.samples += len(chunk)
            yield chunk


# ---------------------------------------------------------------------------------- pass 1: regions
Region = tuple[float, float, str | None]
"""``(start, end, text)``: seconds, and the region's words when known before classification."""


def split_long(regions: Iterable[Region], max_seconds: float) -> list[Region]:
    """Regions longer than ``max_seconds`` cut into equal parts (text kept on the first only if unsplit)."""
    out: list[Region] = []
    for start, end, text in regions:
        parts = max(1, int(np.ceil((end - start) / max_seconds - 1e-9)))
        step = (end - start) / parts
        out += [(start + i * step, start + (i + 1) * step, text if parts == 1 else None) for i in range(parts)]
    return out


def _vad_regions(rec: _Recording, max_seconds: float, options: VadOptions) -> list[Region]:
    if rec.rate != VAD_RATE:
        raise InputError(f"method 'vad' needs a model at {VAD_RATE} Hz, this one reads {rec.rate} Hz: use 'fixed'")
    probs = speech_probabilities(rec.counted())
    return [(s, e, None) for s, e in speech_regions(probs, rec.samples, options=options, max_seconds=max_seconds)]


def _fixed_regions(rec: _Recording, window: float, min_seconds: float) -> list[Region]:
    regions, at = [], 0
    for chunk in rec.counted(window):
        if len(chunk) >= min_seconds * rec.rate and float(np.sqrt(np.mean(np.square(chunk)))) > SILENT_RMS:
            regions.append((at / rec.rate, (at + len(chunk)) / rec.rate, None))
        at += len(chunk)
    return regions


def _whisper_regions(rec: _Recording, transcriber: Any, max_seconds: float) -> list[Region]:
    """Whisper's segments over blocks of ``WHISPER_BLOCK_SECONDS``, split at words when too long."""
    regions: list[Region] = []
    held: list[np.ndarray] = []
    offset = 0  # sample index of held[0][0]
    block = int(WHISPER_BLOCK_SECONDS * rec.rate)
    for chunk in rec.counted():
        held.append(chunk)
        if sum(len(c) for c in held) >= block:
            wave = np.concatenate(held)  # (<= block + one chunk,)
            segments = transcriber.segments(wave)
            kept = segments[:-1] if len(segments) > 1 else segments  # the last may run past the block
            cut = int(kept[-1].end * rec.rate) if len(segments) > 1 else len(wave)
            regions += _word_split(kept, offset / rec.rate, max_seconds)
            held, offset = [wave[cut:]], offset + cut
    if held and sum(len(c) for c in held):
        regions += _word_split(transcriber.segments(np.concatenate(held)), offset / rec.rate, max_seconds)
    return regions


def _word_split(segments: Sequence[Any], offset: float, max_seconds: float) -> list[Region]:
    """Whisper segments shifted by ``offset``; a long one is cut into equal parts, each with its words."""
    out: list[Region] = []
    for seg in segments:
        parts = split_long([(seg.start, seg.end, seg.text)], max_seconds)
        for start, end, text in parts:
            if text is None:
                text = clean_text("".join(w for s, e, w in seg.words if start <= (s + e) / 2 < end))
            out.append((start + offset, end + offset, text))
    return out


# ---------------------------------------------------------------------------------- pass 2: audio per region
def context_windows(regions: Sequence[Region], context: float, max_seconds: float) -> list[tuple[float, float]]:
    """Where each region is classified: widened by up to ``context`` seconds on each side.

    A window never reaches past the middle of the pause to a neighbouring region, never holds
    more than ``max_seconds`` in all, and starts no earlier than the previous window (so one
    pass over the stream serves them all). Regions must be sorted by start.
    """
    windows: list[tuple[float, float]] = []
    for i, (start, end, _) in enumerate(regions):
        side = max(0.0, min(context, (max_seconds - (end - start)) / 2))
        low = max(0.0, start - side)
        if i > 0 and regions[i - 1][1] < start:
            low = max(low, (regions[i - 1][1] + start) / 2)
        high = end + side
        if i + 1 < len(regions) and end < regions[i + 1][0]:
            high = min(high, (end + regions[i + 1][0]) / 2)
        low = min(start, max(low, windows[-1][0])) if windows else low
        windows.append((low, max(end, high)))
    return windows


def cut_regions(chunks: Iterable[np.ndarray], spans: Sequence[tuple[float, ...]], rate: int) -> Iterator[np.ndarray]:
    """The samples of each ``(start, end)`` span (sorted by start) from one pass over ``chunks``.

    Only audio from the current span's start onwards is held, so long silences between spans
    cost no memory. A span past the end of the stream comes out short (or empty).
    """
    stream = iter(chunks)
    held, first = np.zeros(0, np.float32), 0  # held[0] is sample ``first`` of the recording
    for span in spans:
        a, b = int(round(span[0] * rate)), int(round(span[1] * rate))
        while first + len(held) < b:
            more = next(stream, None)
            if more is None:
                break
            held = np.concatenate([held, more])
            drop = min(max(0, a - first), len(held))
            held, first = held[drop:], first + drop
        yield held[max(0, a - first) : max(0, b - first)].copy()


def _classify(recognizer: Any, batch: list[tuple[Region, np.ndarray]], modalities: object,
              asr_source: str | None) -> list[Segment]:
    rate = recognizer.config.sample_rate
    items = [{"audio": (wave, rate), "text": text} for (_, _, text), wave in batch]
    predictions = recognizer.classify_batch(recognizer.prepare_batch(items, modalities=modalities), modalities=modalities)
    segments = []
    for ((start, end, text), _), pred in zip(batch, predictions):
        scores = {s["label"]: s["score"] for s in pred.scores}
        source = asr_source if text is not None and asr_source and pred.transcript is not None else pred.transcript_source
        segments.append(Segment(start=float(start), end=float(end), label=pred.label,
                                scores={label: float(scores[label]) for label in recognizer.labels},
                                transcript=pred.transcript, transcript_source=source,
                                modalities_used=list(pred.modalities_used), per_modality=dict(pred.per_modality),
                                agreement=pred.agreement))
    return segments


def _classify_regions(recognizer: Any, rec: _Recording, regions: Sequence[Region], *, modalities: object,
                      batch_size: int, context: float, asr_source: str | None,
                      progress: Callable[[float], None] | None) -> list[Segment]:
    """Pass 2: each region's context window cut from the stream, classified in batches."""
    config = recognizer.config
    segments: list[Segment] = []
    batch: list[tuple[Region, np.ndarray]] = []
    windows = context_windows(regions, context, config.max_audio_seconds)
    for (start, end, text), (low, _), wave in zip(regions, windows, cut_regions(rec.chunks(), windows, rec.rate)):
        end = min(end, low + len(wave) / rec.rate)  # spans may reach past the end: cut them there
        if end - start >= config.min_audio_seconds:
            batch.append(((start, end, text), wave))
        if len(batch) == batch_size:
            segments += _classify(recognizer, batch, modalities, asr_source)
            batch = []
            if progress is not None:
                progress(end)
    if batch:
        segments += _classify(recognizer, batch, modalities, asr_source)
    return segments


# ---------------------------------------------------------------------------------- entry point
def _regions(rec: _Recording, recognizer: Any, method: str, spans: Sequence | None, vad: VadOptions,
             window: float | None) -> list[Region]:
    config = recognizer.config
    if spans is not None:
        regions = [(float(s[0]), float(s[1]), clean_text(s[2]) if len(s) > 2 else None) for s in spans]
        for start, end, _ in regions:
            if not 0 <= start < end:
                raise InputError(f"spans: need 0 <= start < end, got ({start}, {end})")
        return sorted(regions)
    if method == "vad":
        return _vad_regions(rec, config.max_audio_seconds, vad)
    if method == "fixed":
        return _fixed_regions(rec, min(window or config.max_audio_seconds, config.max_audio_seconds),
                              config.min_audio_seconds)
    transcriber = recognizer.transcriber
    ready, reason = transcriber.available() if transcriber is not None else (False, "ASR is off")
    if not ready:
        raise InputError(f"method 'whisper' needs Whisper: {reason}")
    return _whisper_regions(rec, transcriber, config.max_audio_seconds)


@contextlib.contextmanager
def _opened(recognizer: Any, source: Any) -> Iterator[_Recording]:
    """``source`` as a ``_Recording``; a file is transcoded by the recognizer's (sandboxed) decoder when it has one."""
    config, decoder = recognizer.config, getattr(recognizer, "decoder", None)
    if isinstance(source, (str, Path)) and hasattr(decoder, "transcode"):
        with tempfile.TemporaryDirectory(prefix="gia-mic-timeline-") as folder:  # the file is parsed in the sandbox
            pcm = Path(folder) / "audio.f32"
            samples = decoder.transcode(source, pcm, sample_rate=config.sample_rate)
            yield _Recording(PcmFile(pcm, samples, str(source)), config.sample_rate, config.min_audio_seconds)
    else:
        yield _Recording(source, config.sample_rate, config.min_audio_seconds)


def build_timeline(recognizer: Any, source: Any, *, method: str = "vad", modalities: object = None,
                   spans: Sequence[tuple] | None = None, batch_size: int = 8, vad: VadOptions | None = None,
                   window_seconds: float | None = None, context_seconds: float = CONTEXT_SECONDS,
                   progress: Progress | None = None) -> Timeline:
    """Splits a recording into utterances and classifies each (see the module docstring).

    Args:
        recognizer: An ``EmotionRecognizer``.
        source: An audio or video file, a mono/multi-channel waveform at the model's rate, or
            ``(waveform, sample_rate)``.
        method: ``"vad"``, ``"whisper"`` or ``"fixed"``.
        modalities: Subset to classify with (default: every trained modality available).
            Video frames are not read per segment yet: a video model gets speech and text.
        spans: ``[(start, end)]`` or ``[(start, end, text)]`` seconds to classify instead of
            segmenting (their text is used as given); longer ones are split.
        batch_size: Segments per encoder batch.
        vad: Voice-activity thresholds for ``method="vad"``.
        window_seconds: Window length for ``method="fixed"`` (default and maximum: the model's).
        context_seconds: The model hears up to this much of the recording on each side of a
            segment (see ``context_windows``); the segment's ``start``/``end`` do not change.
        progress: Called with ``(done_seconds, total_seconds)`` after each batch.

    Raises:
        MediaError: The file cannot be read or has no audio; the waveform is unusable.
        InputError: Unknown method, bad spans, or ``"whisper"`` without ASR.
    """
    if method not in METHODS:
        raise InputError(f"unknown timeline method {method!r}: use one of {', '.join(METHODS)}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    recognizer.check_modalities(modalities)
    with _opened(recognizer, source) as rec:
        return _build(recognizer, rec, method=method, modalities=modalities, spans=spans, batch_size=batch_size,
                      vad=vad, window_seconds=window_seconds, context_seconds=context_seconds, progress=progress)


def _build(recognizer: Any, rec: _Recording, *, method: str, modalities: object, spans: Sequence[tuple] | None,
           batch_size: int, vad: VadOptions | None, window_seconds: float | None, context_seconds: float,
           progress: Progress | None) -> Timeline:
    config, timings = recognizer.config, {}
    start = time.perf_counter()
    regions = _regions(rec, recognizer, method, spans, vad or VadOptions(), window_seconds)
    duration = rec.samples / rec.rate if rec.samples else float(rec.declared or 0.0)
    regions = [r for r in split_long(regions, config.max_audio_seconds) if r[1] - r[0] >= config.min_audio_seconds]
    timings["segmentation"] = time.perf_counter() - start
    start = time.perf_counter()
    asr_source = f"whisper:{recognizer.transcriber.name}" if method == "whisper" and spans is None else None
    segments = _classify_regions(recognizer, rec, regions, modalities=modalities, batch_size=batch_size,
                                 context=context_seconds, asr_source=asr_source,
                                 progress=(lambda done: progress(done, duration)) if progress else None)
    if progress is not None:
        progress(duration, duration)
    timings["classification"] = time.perf_counter() - start
    message = None if segments else f"no speech found in {rec.name or 'the waveform'} ({duration:.1f} s): the timeline is empty"
    if message:
        logger.info(message)
    return Timeline(source=rec.name, duration=duration, method="spans" if spans is not None else method,
                    labels=list(recognizer.labels), segments=segments, summary=summarize(segments, recognizer.labels),
                    message=message, timings_s=timings)


def explain_segment(recognizer: Any, source: Any, timeline: Timeline, index: int, *, modalities: object = None,
                    context_seconds: float = CONTEXT_SECONDS) -> Any:
    """The full ``Prediction`` (gates and contributions included) of one segment of ``timeline``.

    The segment's audio is cut again from ``source`` (the recording the timeline was built
    from) with the context ``build_timeline`` gave it, and classified with its transcript, so
    nothing but the timeline needs keeping between the two calls. Gate times
    (``gate_axes["audio"]``) are seconds of the recording, not of the cut.

    Args:
        recognizer: The ``EmotionRecognizer`` that built ``timeline``.
        source: The same file or waveform given to ``build_timeline``.
        timeline: Its result.
        index: Which segment (0-based).
        modalities: As given to ``build_timeline``.
        context_seconds: As given to ``build_timeline``.

    Raises:
        InputError: ``index`` is not a segment of the timeline.
    """
    if not 0 <= index < len(timeline.segments):
        raise InputError(f"segment {index} does not exist: the timeline has {len(timeline.segments)}")
    regions = [(s.start, s.end, s.transcript) for s in timeline.segments]
    low, high = context_windows(regions, context_seconds, recognizer.config.max_audio_seconds)[index]
    segment = timeline.segments[index]
    with _opened(recognizer, source) as rec:
        wave = next(cut_regions(rec.chunks(), [(low, high)], rec.rate))  # (samples,) of one window only
    text = segment.transcript if "text" in segment.modalities_used else None
    clip = recognizer.prepare(audio=(wave, rec.rate), text=text, modalities=modalities)
    pred = recognizer.classify(clip, modalities=modalities)
    if "audio" in pred.gate_axes:
        pred.gate_axes["audio"] = [t + low for t in pred.gate_axes["audio"]]
    return pred
